"""Per-record quality control: extraction, tree-sitter syntax, compile checks, Python test runs."""

from __future__ import annotations

import time

import pytest

from distill.config import QualityConfig
from distill.data.quality.checks import (
    check_drops,
    checks_for,
    extract_code,
    python_syntax_ok,
    python_test_program,
)
from distill.data.quality.validators import (
    TOOLCHAINS,
    CheckResult,
    _run,
    compile_check,
    syntax_check,
    toolchain,
)

GOOD = {
    "python": "def f(x):\n    return x + 1\n\nassert f(1) == 2\n",
    "javascript": (
        'const assert = require("node:assert");\nfunction f(x) { return x + 1; }\n'
        "assert.strictEqual(f(1), 2);\n"
    ),
    "java": (
        "import java.util.*;\n\npublic class Solution {\n"
        "    public static int f(int x) { return x + 1; }\n"
        "    public static void main(String[] args) {\n"
        "        if (f(1) != 2) throw new AssertionError();\n    }\n}\n"
    ),
    "cpp": (
        "#include <cassert>\n#include <vector>\n\n"
        "int f(const std::vector<int>& v) { return static_cast<int>(v.size()); }\n"
        "int main() { assert(f({1}) == 1); }\n"
    ),
    "go": (
        "package main\n\nfunc F(x int) int { return x + 1 }\n\nfunc main() {\n\tif F(1) != 2 {\n"
        '\t\tpanic("bad")\n\t}\n}\n'
    ),
    "rust": (
        "fn f(x: i64) -> i64 {\n    x + 1\n}\n\n#[cfg(test)]\nmod tests {\n    use super::*;\n"
        "    #[test]\n    fn adds() {\n        assert_eq!(f(1), 2);\n    }\n}\n"
    ),
}
BROKEN_SYNTAX = {
    "python": "def f(x)\n    return x\n",
    "javascript": "function f(x) { return x + ; }\n",
    "java": "public class Solution { public static int f(int x) { return x + 1 }\n",
    "cpp": "int f(int x) { return x + 1 \n",
    "go": "package main\nfunc F(x int) int { return x + }\n",
    "rust": "fn f(x: i64) -> i64 { x + }\n",
}
# Parses, but the compiler rejects it (types, names, redeclarations, Python 2).
BROKEN_COMPILE = {
    "python": "print 'hello'\n",
    "javascript": "let a = 1;\nlet a = 2;\n",
    "java": 'public class Solution { public static int f(int x) { return "s"; } }\n',
    "cpp": "int f(int x) { return undefined_name + x; }\n",
    "go": 'package main\nfunc F(x int) int { return "s" }\nfunc main() {}\n',
    "rust": 'fn f(x: i64) -> i64 { "s" }\n',
}


def test_extract_code_knows_each_languages_tags():
    tags = [("js", "javascript"), ("JavaScript", "javascript"), ("c++", "cpp"), ("rs", "rust")]
    tags += [("golang", "go"), ("py3", "python"), ("java", "java")]
    for tag, language in tags:
        text = f"First:\n```text\nnot this\n```\n```{tag}\nthe code\n```\n"
        assert extract_code(text, language) == "the code", tag
    assert extract_code("```bash\nls\n```\n```\nuntagged\n```", "go") == "untagged"
    assert extract_code("```python\nx = 1\n```", "rust") == ""  # another language: never taken
    assert extract_code("```text\nbuggy\n```\nNo fixed code.", "python") == ""


@pytest.mark.parametrize("language", sorted(GOOD))
def test_tree_sitter_accepts_good_code_and_rejects_broken_code(language):
    assert syntax_check(GOOD[language], language).ok is True
    result = syntax_check(BROKEN_SYNTAX[language], language)
    assert result.ok is False and "syntax error" in result.detail and "line" in result.detail
    assert syntax_check("   \n", language).ok is False


@pytest.mark.parametrize("language", sorted(GOOD))
def test_compile_check_with_the_real_toolchain(language):
    if toolchain(language) is None:
        result = compile_check(GOOD[language], language)
        assert result.ok is None and result.detail == f"toolchain missing: {TOOLCHAINS[language]}"
        pytest.skip(f"{TOOLCHAINS[language]} is not installed: the check reports it and passes")
    assert compile_check(GOOD[language], language) == CheckResult(True, "ok")
    result = compile_check(BROKEN_COMPILE[language], language)
    assert result.ok is False and result.detail != "ok", result


def test_a_checker_past_its_timeout_is_killed_with_its_children(tmp_path):
    start = time.monotonic()
    result = _run(["sh", "-c", "sleep 30 & sleep 30"], str(tmp_path), timeout_s=0.5)
    assert result == CheckResult(False, "timed out after 0.5s")
    assert time.monotonic() - start < 10  # did not wait for either sleep


PROGRAMS = [  # (code, tests_passed)
    ("def f(x):\n    return x + 1\n\nassert f(1) == 2\n", 1),
    ("def f(x):\n    return x + 2\n\nassert f(1) == 2\n", 0),
    ("def f(x):\n    return x + 1\n\ndef test_f():\n    assert f(1) == 2\n", 1),
    ("def f(x):\n    return x + 1\n\ndef test_f():\n    assert f(1) == 3\n", 0),
    ("def f(x):\n    return x + 1\n\nif __name__ == '__main__':\n    assert f(1) == 3\n", 0),
    (
        "import unittest\n\ndef f(x):\n    return x + 1\n\nclass T(unittest.TestCase):\n"
        "    def test_a(self):\n        self.assertEqual(f(1), {want})\n\n"
        "if __name__ == '__main__':\n    unittest.main()\n",
        None,
    ),
]


@pytest.mark.parametrize(("code", "passed"), PROGRAMS)
def test_python_runs_the_answers_own_tests(code, passed):
    cases = (
        [(code.format(want=2), 1), (code.format(want=3), 0)] if passed is None else [(code, passed)]
    )
    for source, want in cases:
        checks = checks_for(source, "python")
        assert checks["syntax"] and checks["compiles"]
        assert (checks["tests_run"], checks["tests_passed"]) == (1, want), checks


def test_python_tests_from_a_separate_block_and_a_timeout():
    answer = "```python\ndef f(x):\n    return x + 1\n```\nTests:\n```python\nassert f(1) == 3\n```"
    code = extract_code(answer, "python")
    assert checks_for(code, "python")["tests_run"] == 0  # the block alone holds no tests
    checks = checks_for(code, "python", response=answer)
    assert (checks["tests_run"], checks["tests_passed"]) == (1, 0)
    loop = "def f():\n    while True:\n        pass\n\nassert f() is None\n"
    checks = checks_for(loop, "python", test_timeout_s=1.0)
    assert checks["tests_passed"] == 0 and checks["tests_result"] == "timed out"
    assert python_test_program("def f():\n    return 1\n") is None


def test_checks_skip_the_compiler_after_a_syntax_error_and_count_drops():
    bad = checks_for(BROKEN_SYNTAX["rust"], "rust")
    assert bad["syntax"] is False and bad["compiles"] is None
    assert bad["compile_detail"] == "skipped: syntax error"
    records = [
        {"id": "a", "code": "", "checks": {"has_code": False}},
        {"id": "b", "code": "x", "checks": bad},
        {"id": "c", "code": "x", "checks": {"syntax": True, "compiles": False}},
        {"id": "d", "code": "x", "checks": {"syntax": True, "compiles": True, "tests_run": 1}},
        {"id": "e", "code": "x", "checks": {"syntax": True, "compiles": None, "tests_run": 0}},
        {"id": "f", "code": "x"},  # an older record without checks is kept
    ]
    kept, drops, ids = check_drops(records, QualityConfig())
    assert [r["id"] for r in kept] == ["e", "f"]
    assert drops == {"no_code": 1, "syntax_error": 1, "compile_error": 1, "tests_failed": 1}
    assert ids["tests_failed"] == ["d"]
    kept, drops, _ = check_drops(records, QualityConfig(drop_failed_tests=False))
    assert [r["id"] for r in kept] == ["d", "e", "f"]


def test_extract_code_prefers_the_python_block():
    text = "Run it:\n```bash\nls -l\n```\nThen:\n```python\ndef f():\n    return 1\n```\nDone."
    assert extract_code(text) == "def f():\n    return 1"
    assert extract_code("```py\nx = 1\n```") == "x = 1"
    assert extract_code("```\nx = 2\n```") == "x = 2"  # untagged: the first block


def test_extract_code_without_a_closing_fence_or_without_a_block():
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n") == "def f():\n    return 1"
    assert extract_code("def f(): return 1") == ""
    assert extract_code("") == ""


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("def f(x):\n    return x + 1", True),
        ("import os\nprint(os.sep)", True),
        ("def f(x)\n    return x", False),
        ("return (", False),
        ("   \n", False),
        ("x = '\\x00'", True),
        ("\x00", False),
    ],
)
def test_python_syntax_ok(code, ok):
    assert python_syntax_ok(code) is ok
