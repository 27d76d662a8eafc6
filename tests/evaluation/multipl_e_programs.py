"""Hand-written completions of three MultiPL-E problems in each language: correct ones, wrong
ones that build, and ones that do not build or loop, and one that attacks the machine, per language.

A completion continues the problem's prompt (a signature ending in ``{``); in Java, C++ and Rust
the tests close the function, so those completions end inside it.
"""

from __future__ import annotations

ADD, STRLEN, GCD = "HumanEval_53_add", "HumanEval_23_strlen", "HumanEval_13_greatest_common_divisor"

CORRECT = {
    "js": {
        ADD: "  return x + y;\n}\n",
        STRLEN: "  return string.length;\n}\n",
        GCD: "  while (b) { [a, b] = [b, a % b]; }\n  return a;\n}\n",
    },
    "java": {
        ADD: "        return x + y;\n",
        STRLEN: "        return string.length();\n",
        GCD: "        while (b != 0) { long t = a % b; a = b; b = t; }\n        return a;\n",
    },
    "cpp": {
        ADD: "  return x + y;\n",
        STRLEN: "  return string.size();\n",
        GCD: "  while (b) { long t = a % b; a = b; b = t; }\n  return a;\n",
    },
    "rs": {
        ADD: "    x + y\n",
        STRLEN: "    string.len() as isize\n",
        GCD: "    let (mut a, mut b) = (a, b);\n    while b != 0 { let t = a % b; a = b; b = t; }\n"
        "    a\n",
    },
    "go": {
        ADD: "  return x + y\n}\n",
        STRLEN: "  return len(myString)\n}\n",
        GCD: "  for b != 0 { a, b = b, a%b }\n  return a\n}\n",
    },
}

WRONG = {  # they build, and answer wrongly
    "js": {ADD: "  return x - y;\n}\n", STRLEN: "  return 1;\n}\n", GCD: "  return a * b;\n}\n"},
    "java": {
        ADD: "        return x - y;\n",
        STRLEN: "        return 1l;\n",
        GCD: "        return a * b;\n",
    },
    "cpp": {ADD: "  return x - y;\n", STRLEN: "  return 1;\n", GCD: "  return a * b;\n"},
    "rs": {ADD: "    x - y\n", STRLEN: "    1\n", GCD: "    a * b\n"},
    "go": {ADD: "  return x - y\n}\n", STRLEN: "  return 1\n}\n", GCD: "  return a * b\n}\n"},
}

NOT_BUILDING = {  # a type error or a syntax error
    "js": {
        ADD: "  return x + ;\n}\n",
        STRLEN: "  return string.length(;\n}\n",
        GCD: "  return a %;\n}\n",
    },
    "java": {
        ADD: '        return "x";\n',
        STRLEN: "        return string;\n",
        GCD: "        return a.b;\n",
    },
    "cpp": {
        ADD: '  return std::string("x");\n',
        STRLEN: "  return string;\n",
        GCD: "  return a.b;\n",
    },
    "rs": {ADD: '    "x"\n', STRLEN: "    string\n", GCD: "    a.b\n"},
    "go": {ADD: '  return "x"\n}\n', STRLEN: "  return myString\n}\n", GCD: "  return a.b\n}\n"},
}

LOOPING = {  # never returns
    "js": {t: "  while (true) {}\n}\n" for t in (ADD, STRLEN, GCD)},
    "java": {t: "        while (true) {}\n" for t in (ADD, STRLEN, GCD)},
    "cpp": {t: "  while (true) {}\n" for t in (ADD, STRLEN, GCD)},
    "rs": {t: "    loop {}\n" for t in (ADD, STRLEN, GCD)},
    "go": {t: "  for {}\n}\n" for t in (ADD, STRLEN, GCD)},
}

# ADD that attacks the machine: processes without end (C++ forks, Java threads, Go goroutines),
# memory without end (Rust), the evaluator's files (JavaScript). Each must fail and leave nothing.
HOSTILE = {
    "js": "  require('fs').writeFileSync('/root/distill-sandbox-escape', 'x');\n"
    "  return x + y;\n}\n",
    "java": "        while (true) { new Thread(() -> { while (true) {} }).start(); }\n",
    "cpp": "  while (true) fork();\n",
    "rs": "    let v: Vec<u8> = vec![1; 1 << 40];\n    x + y + v[0] as isize - 1\n",
    "go": "  for { go func() { for {} }() }\n}\n",
}

# Chat answers: the whole function (and, where the language allows them, a helper and the
# model's own main), in a fenced block with prose around it.
CHAT_ANSWERS = {
    "js": (
        "function twice(v) { return 2 * v; }\n\nfunction add(x, y){\n  return twice(x + y) / 2;\n}"
        "\n\nconsole.log(add(1, 2));\n"
    ),
    "java": "class Problem {\n    public static long add(long x, long y) {\n        return x + y;\n"
    "    }\n}\n",
    "cpp": "#include <cstdio>\nlong add(long x, long y) {\n    return x + y;\n}\n",
    "rs": "fn twice(v: isize) -> isize {\n    2 * v\n}\n\nfn add(x: isize, y: isize) -> isize {\n"
    '    twice(x + y) / 2\n}\n\nfn main() {\n    println!("{}", add(1, 2));\n}\n',
    "go": "package main\n\nfunc twice(v int) int { return 2 * v }\n\nfunc add(x int, y int) int {\n"
    "    return twice(x + y) / 2\n}\n",
}
