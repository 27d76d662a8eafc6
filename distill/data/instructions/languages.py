"""The six target languages: names, fence tags and aliases, naming style, types, test idioms.

Function specs are written once as Python signatures (`name(a: list[int]) -> int`); this module
renders them for every language: identifiers in the language's style and each spec type as the
language's idiomatic type, so one spec table serves all six languages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    """How prompts name a language and how its code is fenced, named, typed and tested.

    Attributes:
        key: the config key (`data.languages.<key>`).
        name: the display name used in prompts.
        tag: the fence tag the teacher is asked to use.
        aliases: other fence tags accepted when extracting code (lower case).
        style: identifier style: "snake", "camel" or "pascal".
        extension: the source-file extension of the compile check.
        tests: how the teacher is asked to test code inside the same block.
        unit_tests: how the `write_tests` kind asks for a test suite.
        container: how a data structure is asked for.
    """

    key: str
    name: str
    tag: str
    aliases: tuple[str, ...]
    style: str
    extension: str
    tests: str
    unit_tests: str
    container: str


LANGUAGES: dict[str, Language] = {
    lang.key: lang
    for lang in (
        Language(
            "python",
            "Python",
            "python",
            ("py", "python3", "py3"),
            "snake",
            ".py",
            "After the code, add plain `assert` statements that test it (no test framework).",
            'a `unittest.TestCase` ending with `if __name__ == "__main__": unittest.main()`',
            "a class with type hints and docstrings",
        ),
        Language(
            "javascript",
            "JavaScript",
            "javascript",
            ("js", "node", "mjs", "cjs"),
            "camel",
            ".js",
            'After the code, test it with `const assert = require("node:assert");` and '
            "`assert.strictEqual` / `assert.deepStrictEqual` calls.",
            'tests with `node:test` (`const test = require("node:test")`) and `node:assert`',
            "an ES2020 class with JSDoc comments",
        ),
        Language(
            "java",
            "Java",
            "java",
            (),
            "camel",
            ".java",
            "Put everything in one `public class Solution` whose `main` method checks the "
            "results and throws an `AssertionError` on a mismatch.",
            "a test class with a `main` method that runs each check and throws an "
            "`AssertionError` on a failure (no JUnit: only the JDK is available)",
            "a generic class with Javadoc comments",
        ),
        Language(
            "cpp",
            "C++",
            "cpp",
            ("c++", "cxx", "cc", "hpp", "h++"),
            "snake",
            ".cpp",
            "Add a `main` function that checks the results with `assert` from `<cassert>`.",
            "test functions called from `main`, each checking results with `assert` from "
            "`<cassert>` (no test framework)",
            "a C++17 class template with const-correct member functions",
        ),
        Language(
            "go",
            "Go",
            "go",
            ("golang",),
            "pascal",
            ".go",
            "Write it in `package main` with a `main` function that checks the results and "
            "panics on a mismatch.",
            "table-driven checks in a `main` function that panics on a failure (one file, "
            "`package main`)",
            "a struct type with methods and doc comments",
        ),
        Language(
            "rust",
            "Rust",
            "rust",
            ("rs",),
            "snake",
            ".rs",
            "Add a `#[cfg(test)] mod tests` with `#[test]` functions.",
            "a `#[cfg(test)] mod tests` with one `#[test]` function per behaviour",
            "a generic struct with an `impl` block and doc comments",
        ),
    )
}

# Python spec type -> (javascript, java, cpp, go, rust parameter, rust return).
TYPES: dict[str, tuple[str, str, str, str, str, str]] = {
    "int": ("number", "int", "int", "int", "i64", "i64"),
    "float": ("number", "double", "double", "float64", "f64", "f64"),
    "str": ("string", "String", "std::string", "string", "&str", "String"),
    "bool": ("boolean", "boolean", "bool", "bool", "bool", "bool"),
    "list[int]": ("number[]", "int[]", "std::vector<int>", "[]int", "&[i64]", "Vec<i64>"),
    "list[float]": (
        "number[]", "double[]", "std::vector<double>", "[]float64", "&[f64]", "Vec<f64>",
    ),
    "list[str]": (
        "string[]", "String[]", "std::vector<std::string>", "[]string", "&[String]", "Vec<String>",
    ),
    "list[list[int]]": (
        "number[][]", "int[][]", "std::vector<std::vector<int>>", "[][]int", "&[Vec<i64>]",
        "Vec<Vec<i64>>",
    ),
    "dict[str, int]": (
        "Map<string, number>", "Map<String, Integer>", "std::map<std::string, int>",
        "map[string]int", "&HashMap<String, i64>", "HashMap<String, i64>",
    ),
    "int | None": (
        "number | null", "Integer", "std::optional<int>", "(int, bool)", "", "Option<i64>",
    ),
    "str | None": (
        "string | null", "String", "std::optional<std::string>", "(string, bool)", "",
        "Option<String>",
    ),
}  # fmt: skip
COLUMN = {"javascript": 0, "java": 1, "cpp": 2, "go": 3}
SIGNATURE = re.compile(r"^(\w+)\((.*)\)\s*->\s*(.+)$")


def alias_map() -> dict[str, str]:
    """Every accepted fence tag (lower case) -> language key."""
    out = {}
    for lang in LANGUAGES.values():
        for tag in (lang.key, lang.tag, *lang.aliases):
            out[tag] = lang.key
    return out


def identifier(snake: str, style: str) -> str:
    """`snake_case` in the given style ("snake", "camel" or "pascal")."""
    parts = snake.split("_")
    if style == "snake":
        return snake
    pascal = "".join(p[:1].upper() + p[1:] for p in parts)
    return pascal if style == "pascal" else pascal[:1].lower() + pascal[1:]


def parse_signature(signature: str) -> tuple[str, list[tuple[str, str]], str]:
    """`name(a: T, b: U) -> R` -> (name, [(a, T), (b, U)], R); types may hold commas."""
    match = SIGNATURE.match(signature.strip())
    if not match:
        raise ValueError(f"spec signature {signature!r}: expected `name(arg: type, ...) -> type`")
    name, params, ret = match.groups()
    out, depth, current = [], 0, ""
    for ch in params + ",":
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            if current.strip():
                arg, _, typ = current.partition(":")
                out.append((arg.strip(), typ.strip()))
            current = ""
        else:
            current += ch
    for _, typ in [*out, ("return", ret.strip())]:
        if typ not in TYPES:
            raise ValueError(f"spec signature {signature!r}: type {typ!r} not in {list(TYPES)}")
    return name, out, ret.strip()


def render_signature(signature: str, language: str) -> str:
    """A spec signature as a declaration in `language` (no body)."""
    name, params, ret = parse_signature(signature)
    lang = LANGUAGES[language]
    fname = identifier(name, lang.style)
    arg_style = "camel" if lang.style == "pascal" else lang.style  # Go: exported func, local args
    args = [(identifier(a, arg_style), t) for a, t in params]
    if language == "python":
        return f"def {signature.strip()}"
    if language == "javascript":
        types = ", ".join(f"{a}: {TYPES[t][0]}" for a, t in args)
        return f"function {fname}({', '.join(a for a, _ in args)})  // ({types}) -> {TYPES[ret][0]}"
    if language == "rust":
        rendered = ", ".join(f"{a}: {TYPES[t][4] or TYPES[t][5]}" for a, t in args)
        return f"fn {fname}({rendered}) -> {TYPES[ret][5]}"
    col = COLUMN[language]
    if language == "go":
        rendered = ", ".join(f"{a} {TYPES[t][col].strip('()').split(',')[0]}" for a, t in args)
        return f"func {fname}({rendered}) {TYPES[ret][col]}"
    if language == "java":
        rendered = ", ".join(f"{TYPES[t][col]} {a}" for a, t in args)
        return f"public static {TYPES[ret][col]} {fname}({rendered})"
    rendered = ", ".join(_cpp_param(TYPES[t][col], a) for a, t in args)
    return f"{TYPES[ret][col]} {fname}({rendered})"


def _cpp_param(typ: str, name: str) -> str:
    """Containers and strings by const reference, scalars by value."""
    return f"const {typ}& {name}" if typ.startswith("std::") else f"{typ} {name}"
