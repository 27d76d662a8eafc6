"""Strict scoring: the sandbox returns plain values, the evaluator compares them.

A problem is *strict-scorable* when every test is a plain check on one call of the function with
literal arguments. In HumanEval's ``check(candidate)`` body (``assert True`` and docstrings are
skipped) and in MBPP's assert lines, these forms are accepted::

    assert f(ARGS) == EXPECTED          # also EXPECTED == f(ARGS), and `is` True/False/None
    assert f(ARGS)                      # the result must be the bool True
    assert not f(ARGS)                  # ... the bool False
    assert abs(f(ARGS) - EXPECTED) < TOL   # or <=; the result must be an int or a float

where ARGS, EXPECTED and TOL are literals or arithmetic on literals (evaluated here, from the
benchmark's own trusted text). Anything else (loops, helper calls, imports inside ``check``,
assignments) makes the problem not strict-scorable: it is reported as such, never guessed. 155 of
HumanEval's 164 problems are strict-scorable.

Only the arguments and the function's name go into the sandbox; the expected values never do, so
a sample cannot learn them from the evaluator. The comparison (:func:`strict_equal`) checks types:
``bool`` only equals ``bool`` (``1 == True`` fails), containers must be of the same type, ``int``
and ``float`` compare by value as Python does, and the values are rebuilt from plain builtin data,
so an object with its own ``__eq__`` cannot take part.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from typing import Any

_LITERAL_NODES = (
    ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict, ast.UnaryOp, ast.BinOp, ast.Load,
    ast.USub, ast.UAdd, ast.Not, ast.Invert,
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow,
)  # fmt: skip


@dataclass(frozen=True)
class StrictCase:
    """One checked call.

    Attributes:
        args: Positional arguments of the call.
        kind: ``"eq"``, ``"true"``, ``"false"`` or ``"approx"``.
        expected: The value ``eq`` and ``approx`` compare with.
        tol: ``approx`` tolerance.
        inclusive: ``approx`` with ``<=`` instead of ``<``.
    """

    args: tuple[Any, ...]
    kind: str
    expected: Any = None
    tol: float = 0.0
    inclusive: bool = False


@dataclass(frozen=True)
class StrictTests:
    """A problem's tests in strict form: the function's name and its checked calls."""

    entry: str
    cases: tuple[StrictCase, ...]


@functools.lru_cache(maxsize=4096)
def check_function_tests(test: str, entry_point: str) -> StrictTests | None:
    """The strict form of HumanEval-style tests (a ``check(candidate)`` function), or None."""
    module = _module(test)
    if module is None:
        return None
    checks = [n for n in module.body if isinstance(n, ast.FunctionDef) and n.name == "check"]
    if len(checks) != 1 or len(checks[0].args.args) != 1:
        return None
    harmless = (ast.FunctionDef, ast.Import, ast.ImportFrom, ast.Expr, ast.Assign)
    if not all(isinstance(n, harmless) for n in module.body):
        return None
    return _cases(checks[0].body, checks[0].args.args[0].arg, entry_point)


@functools.lru_cache(maxsize=4096)
def assert_line_tests(test: str, entry_point: str) -> StrictTests | None:
    """The strict form of MBPP-style tests (assert lines calling ``entry_point``), or None."""
    module = _module(test)
    return None if module is None else _cases(module.body, entry_point, entry_point)


def _module(test: str) -> ast.Module | None:
    try:
        return ast.parse(test)
    except SyntaxError:
        return None


def _cases(body: list[ast.stmt], fname: str, entry: str) -> StrictTests | None:
    cases = []
    for stmt in body:
        if isinstance(stmt, ast.Pass) or (
            isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        ):
            continue
        if not isinstance(stmt, ast.Assert):
            return None
        if isinstance(stmt.test, ast.Constant) and stmt.test.value is True:
            continue
        case = _case(stmt.test, fname)
        if case is None:
            return None
        cases.append(case)
    return StrictTests(entry, tuple(cases)) if cases else None


def _case(test: ast.expr, fname: str) -> StrictCase | None:
    if _call_args(test, fname) is not None:
        return StrictCase(_call_args(test, fname), "true")
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        args = _call_args(test.operand, fname)
        return None if args is None else StrictCase(args, "false")
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return None
    op, left, right = test.ops[0], test.left, test.comparators[0]
    if isinstance(op, ast.Eq | ast.Is):
        if _call_args(left, fname) is None:
            left, right = right, left
        args, expected = _call_args(left, fname), _literal(right)
        if args is None or expected is None:
            return None
        if isinstance(op, ast.Is) and not (expected[0] is None or type(expected[0]) is bool):
            return None
        return StrictCase(args, "eq", expected[0])
    if isinstance(op, ast.Lt | ast.LtE):
        return _approx_case(left, right, fname, isinstance(op, ast.LtE))
    return None


def _approx_case(left: ast.expr, right: ast.expr, fname: str, inclusive: bool) -> StrictCase | None:
    """``abs(f(ARGS) - EXPECTED) < TOL``."""
    if not (
        isinstance(left, ast.Call)
        and isinstance(left.func, ast.Name)
        and left.func.id == "abs"
        and len(left.args) == 1
        and not left.keywords
        and isinstance(left.args[0], ast.BinOp)
        and isinstance(left.args[0].op, ast.Sub)
    ):
        return None
    args = _call_args(left.args[0].left, fname)
    expected, tol = _literal(left.args[0].right), _literal(right)
    if args is None or expected is None or tol is None:
        return None
    numbers = all(type(v) in (int, float) for v in (expected[0], tol[0]))
    return StrictCase(args, "approx", expected[0], tol[0], inclusive) if numbers else None


def _call_args(node: ast.expr, fname: str) -> tuple[Any, ...] | None:
    """The literal positional arguments of a plain ``fname(...)`` call, else None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
        return None
    if node.func.id != fname or node.keywords:
        return None
    values = [_literal(a) for a in node.args]
    return None if any(v is None for v in values) else tuple(v[0] for v in values)


def _literal(node: ast.expr) -> tuple[Any] | None:
    """``(value,)`` of a literal expression of the benchmark's own test text, else None."""
    if not all(isinstance(n, _LITERAL_NODES) for n in ast.walk(node)):
        return None
    try:
        code = compile(ast.Expression(node), "<test>", "eval")
        return (eval(code, {"__builtins__": {}}, {}),)  # noqa: S307 - literals and arithmetic only
    except Exception:  # noqa: BLE001 - e.g. a 1/0 in the test text: not strict-scorable
        return None


def check_case(case: StrictCase, actual: Any) -> bool:
    """Whether ``actual`` (a decoded plain value) passes ``case``."""
    if case.kind == "eq":
        return strict_equal(actual, case.expected)
    if case.kind in ("true", "false"):
        return type(actual) is bool and actual is (case.kind == "true")
    if type(actual) not in (int, float):
        return False
    diff = abs(actual - case.expected)
    return diff <= case.tol if case.inclusive else diff < case.tol


def strict_equal(actual: Any, expected: Any) -> bool:
    """``actual == expected`` with type checks (see the module docstring)."""
    ta, te = type(actual), type(expected)
    if ta is bool or te is bool:
        return ta is te and actual == expected
    if ta in (int, float) and te in (int, float):
        return actual == expected
    if ta is not te:
        return False
    if te in (list, tuple):
        return len(actual) == len(expected) and all(map(strict_equal, actual, expected))
    if te is dict:
        keys = {_key(k): k for k in actual}
        return len(actual) == len(expected) and all(
            _key(k) in keys and strict_equal(actual[keys[_key(k)]], v) for k, v in expected.items()
        )
    if te in (set, frozenset):
        return {_key(x) for x in actual} == {_key(x) for x in expected}
    return actual == expected


def _key(value: Any) -> Any:
    """A hashable stand-in for ``value`` that keeps ``True`` apart from ``1``."""
    t = type(value)
    if t is bool:
        return ("bool", value)
    if t in (int, float):
        return ("num", value)
    if t is tuple:
        return ("tuple", tuple(_key(x) for x in value))
    if t is frozenset:
        return ("frozenset", frozenset(_key(x) for x in value))
    return (t.__name__, value)


def describe(value: Any, limit: int = 60) -> str:
    """A short ``type value`` for failure details."""
    text = repr(value)
    return f"{type(value).__name__} {text[:limit]}{'...' if len(text) > limit else ''}"
