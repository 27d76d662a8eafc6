"""Quality control of teacher answers: code extraction, per-record checks, and the dataset filter.

Per record (`checks_for`, run by generation right after the durable append): tree-sitter syntax,
the real compile check when the toolchain is installed, and for Python the teacher's own tests in a
sandboxed child process. Over the dataset (`filter_dataset`, run at export): drops by those checks,
exact and near-duplicate removal, and decontamination against HumanEval and MBPP, each drop
counted under its reason.
"""

from __future__ import annotations

import ast
import logging
import re
from collections.abc import Iterable
from typing import Any

from distill.data.instructions.languages import alias_map
from distill.data.quality.validators import compile_check, syntax_check

log = logging.getLogger(__name__)
FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
ALIASES = alias_map()
DROP_REASONS = (
    "no_code",
    "syntax_error",
    "compile_error",
    "tests_failed",
    "exact_duplicate",
    "near_duplicate",
    "contaminated_humaneval",
    "contaminated_mbpp",
    "contaminated_multipl_e",
)


def code_blocks(text: str) -> list[tuple[str | None, str]]:
    """Every fenced block as (language key or None when untagged or unknown, body)."""
    out = []
    for tag, body in FENCE.findall(text):
        tag = tag.lower()
        out.append((ALIASES.get(tag, "?" if tag else None), body.strip("\n")))
    return out


def extract_code(text: str, language: str = "python") -> str:
    """The first block tagged `language` (any alias: js, c++, rs, golang...), else the first
    untagged block; "" when none. Blocks tagged otherwise (```text, ```bash) are never taken."""
    key = ALIASES.get(language.lower(), language.lower())
    blocks = code_blocks(text)
    for tag, body in blocks:
        if tag == key:
            return body
    return next((body for tag, body in blocks if tag is None), "")


def python_syntax_ok(code: str) -> bool:
    """Whether `code` parses as Python (never executed)."""
    if not code.strip():
        return False
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def checks_for(
    code: str,
    language: str,
    *,
    response: str | None = None,
    compile_code: bool = True,
    run_tests: bool = True,
    compile_timeout_s: float = 30.0,
    test_timeout_s: float = 10.0,
) -> dict[str, Any]:
    """The `checks` field of a record.

    Args:
        code: the extracted code.
        response: the whole answer; its other blocks of `language` may hold the tests (Python).

    Returns:
        has_code; syntax (tree-sitter: True/False, None without a grammar) and syntax_detail;
        compiles (None: not run, toolchain missing or syntax error) and compile_detail; tests_run
        and tests_passed (0 or 1: one program of the answer's own tests) and tests_result.
    """
    syntax = syntax_check(code, language)
    out: dict[str, Any] = {
        "has_code": bool(code.strip()),
        "syntax": syntax.ok,
        "syntax_detail": syntax.detail,
        "compiles": None,
        "compile_detail": "not run",
        "tests_run": 0,
        "tests_passed": 0,
        "tests_result": None,
    }
    if syntax.ok is False:
        out["compile_detail"] = "skipped: syntax error"
        return out
    if compile_code:
        result = compile_check(code, language, compile_timeout_s)
        out["compiles"], out["compile_detail"] = result.ok, result.detail
    if run_tests and language == "python" and out["compiles"] is not False:
        program = python_test_program(code, response)
        if program is not None:
            from distill.evaluation.execution import run_program

            result = run_program(program, test_timeout_s)
            out.update(tests_run=1, tests_passed=int(result.passed), tests_result=result.result)
    return out


def has_tests(source: str) -> bool:
    """Whether Python source holds tests: asserts, unittest cases or test_ functions."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Assert):
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith(
            "test"
        ):
            return True
        if isinstance(node, ast.ClassDef) and any("TestCase" in ast.unparse(b) for b in node.bases):
            return True
    return False


RUN_TESTS = """
# added by distill: run test functions that take no arguments, and every unittest.TestCase
import inspect as _inspect
import io as _io
import unittest as _unittest

for _name, _f in list(globals().items()):
    if _name.startswith("test") and _inspect.isfunction(_f):
        if not _inspect.signature(_f).parameters:
            _f()
_cases = [c for c in list(globals().values()) if isinstance(c, type)]
_cases = [c for c in _cases if issubclass(c, _unittest.TestCase) and c is not _unittest.TestCase]
_suite = _unittest.TestSuite(_unittest.defaultTestLoader.loadTestsFromTestCase(c) for c in _cases)
if _suite.countTestCases():
    _result = _unittest.TextTestRunner(stream=_io.StringIO()).run(_suite)
    assert _result.wasSuccessful(), f"{len(_result.failures)} failed, {len(_result.errors)} errors"
"""


class _RunMainBlock(ast.NodeTransformer):
    """`if __name__ == "__main__":` -> `if True:` (the sandbox does not run code as __main__),
    and `unittest.main()` -> `pass` (the appended runner runs the TestCases instead)."""

    def visit_If(self, node: ast.If) -> ast.AST:
        test = node.test
        if (
            isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name)
            and test.left.id == "__name__"
        ):
            node.test = ast.Constant(True)
        self.generic_visit(node)
        return node

    def visit_Expr(self, node: ast.Expr) -> ast.AST:
        call = node.value
        if isinstance(call, ast.Call) and ast.unparse(call.func) in ("unittest.main", "main"):
            return ast.Pass()
        return node


def python_test_program(code: str, response: str | None = None) -> str | None:
    """The code plus its tests (from the same block, or the answer's other Python blocks) and a
    runner for them; None when there are no tests or the code does not parse."""
    if not has_tests(code) and response:
        others = [b for t, b in code_blocks(response) if t == "python" and b != code]
        code = "\n\n".join([code, *(b for b in others if has_tests(b))])
    if not has_tests(code):
        return None
    try:
        tree = _RunMainBlock().visit(ast.parse(code))
    except (SyntaxError, ValueError):
        return None
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n" + RUN_TESTS


_RELAX = {
    "no_code": "drop_no_code=false",
    "syntax_error": "drop_syntax_errors=false",
    "compile_error": "drop_compile_errors=false",
    "tests_failed": "drop_failed_tests=false",
    "exact_duplicate": "dedup=false",
    "near_duplicate": "near_dup_threshold=null",
}


def relax_quality(drops: dict[str, int]) -> list[str]:
    """The `data.quality` overrides that keep the records dropped for the reasons in `drops`."""
    knobs = [_RELAX.get(reason, "decontaminate=false") for reason in drops]
    return [f"data.quality.{k}" for k in dict.fromkeys(knobs)]


def _has_code(record: dict[str, Any]) -> bool:
    return bool((record.get("code") or "").strip())


def check_drops(records: Iterable[dict[str, Any]], quality: Any) -> tuple[list, dict, dict]:
    """Drop records by their stored checks (no code, syntax, compile, failed tests)."""
    rules = (
        # Only a record `distill generate` checked is known to lack code (it stores `checks`);
        # a dataset from elsewhere may carry its code in `response` alone.
        ("no_code", quality.drop_no_code, lambda c, r: "checks" in r and not _has_code(r)),
        ("syntax_error", quality.drop_syntax_errors, lambda c, r: c.get("syntax") is False),
        ("compile_error", quality.drop_compile_errors, lambda c, r: c.get("compiles") is False),
        (
            "tests_failed",
            quality.drop_failed_tests,
            lambda c, r: c.get("tests_run", 0) > c.get("tests_passed", 0),
        ),
    )
    kept, drops, ids = [], {}, {}
    for record in records:
        checks = record.get("checks") or {}
        reason = next((name for name, on, bad in rules if on and bad(checks, record)), None)
        if reason is None:
            kept.append(record)
        else:
            drops[reason] = drops.get(reason, 0) + 1
            ids.setdefault(reason, []).append(record["id"])
    return kept, drops, ids


def filter_dataset(
    records: list[dict[str, Any]], cfg: Any
) -> tuple[list[dict[str, Any]], dict[str, int], dict[str, list[str]]]:
    """Checks, exact and near dedup, then decontamination; the first record of a duplicate group
    is kept. `cfg` is the `data` config (or its `quality` group).

    Returns:
        (kept records in input order, {reason: count}, {reason: [record ids]}), reasons from
        `DROP_REASONS`.
    """
    from distill.data.quality.decontam import decontaminate
    from distill.data.quality.dedup import deduplicate

    quality = getattr(cfg, "quality", cfg)
    kept, drops, ids = check_drops(records, quality)
    for stage in (deduplicate, decontaminate):
        kept, stage_ids = stage(kept, quality)
        for reason, dropped in stage_ids.items():
            drops[reason] = drops.get(reason, 0) + len(dropped)
            ids.setdefault(reason, []).extend(dropped)
    log.info("filter: kept %d of %d records; dropped %s", len(kept), len(records), drops or "none")
    return kept, drops, ids
