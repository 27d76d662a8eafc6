"""Strict mode: which tests it accepts, how it compares, and the plain-value codec."""

from __future__ import annotations

import collections
import json
import math

import pytest

from distill.evaluation.benchmarks import Problem, load_problems
from distill.evaluation.execution import classify, strict_tests
from distill.evaluation.sandbox_codec import CodecError, decode_value, encode_value
from distill.evaluation.strict import StrictCase, check_case, strict_equal

NOT_STRICT_HUMANEVAL = [
    "HumanEval/32", "HumanEval/33", "HumanEval/37", "HumanEval/38", "HumanEval/44",
    "HumanEval/50", "HumanEval/53", "HumanEval/129", "HumanEval/151",
]  # fmt: skip


def humaneval_like(body: str) -> Problem:
    return Problem("toy/f", "def f(x):\n", "def check(candidate):\n" + body, "f", "    return x\n")


def test_humaneval_has_155_strict_scorable_problems() -> None:
    problems = load_problems("humaneval")
    missing = [p.task_id for p in problems if strict_tests(p) is None]
    assert missing == NOT_STRICT_HUMANEVAL
    assert len(problems) - len(missing) == 155


@pytest.mark.parametrize(
    ("line", "case"),
    [
        ("assert candidate(1) == 2", StrictCase((1,), "eq", 2)),
        ("assert [1, -2] == candidate((3, 'a'))", StrictCase(((3, "a"),), "eq", [1, -2])),
        ("assert candidate(2 ** 3) == 1 / 4, 'message'", StrictCase((8,), "eq", 0.25)),
        ("assert candidate(0) is True", StrictCase((0,), "eq", True)),
        ("assert candidate('x')", StrictCase(("x",), "true")),
        ("assert not candidate([])", StrictCase(([],), "false")),
        ("assert abs(candidate(1.5) - 2.0) < 1e-6", StrictCase((1.5,), "approx", 2.0, 1e-6)),
        ("assert abs(candidate(1) - 2) <= 0.5", StrictCase((1,), "approx", 2, 0.5, True)),
    ],
)
def test_accepted_forms(line: str, case: StrictCase) -> None:
    tests = strict_tests(humaneval_like(f"    assert True\n    {line}\n"))
    assert tests is not None and tests.entry == "f"
    assert tests.cases == (case,)


@pytest.mark.parametrize(
    "body",
    [
        "    for i in range(3):\n        assert candidate(i) == i\n",
        "    assert candidate(1) == helper(1)\n",
        "    x = 1\n    assert candidate(x) == 1\n",
        "    assert candidate(1) != 2\n",
        "    assert candidate(1) is 2\n",
        "    assert candidate(x=1) == 1\n",
        "    assert candidate(1) == 1 / 0\n",
        "    import math\n    assert candidate(1) == 1\n",
        "    pass\n",
    ],
)
def test_other_forms_are_not_strict(body: str) -> None:
    assert strict_tests(humaneval_like(body)) is None


def test_mbpp_asserts_call_the_function_by_name() -> None:
    mbpp = Problem(
        "Mbpp/1", "text", "assert sq(3) == 9\nassert sq(-1) == 1", "sq", "", benchmark="mbpp"
    )
    tests = strict_tests(mbpp)
    assert tests is not None and tests.entry == "sq"
    assert [c.args for c in tests.cases] == [(3,), (-1,)]
    other = Problem("Mbpp/2", "t", "assert sq(root) == 9", "sq", "", benchmark="mbpp")
    assert strict_tests(other) is None


@pytest.mark.parametrize(
    ("actual", "expected", "equal"),
    [
        (1, 1.0, True),
        (True, 1, False),
        (1, True, False),
        (False, False, True),
        ([1, 2], (1, 2), False),
        ((1, [2.0]), (1, [2]), True),
        ({1: "a"}, {True: "a"}, False),
        ({"k": [1]}, {"k": [1]}, True),
        ({1, 2}, {2, 1}, True),
        ({True}, {1}, False),
        ({1}, frozenset({1}), False),
        ("1", 1, False),
        (None, None, True),
        (None, 0, False),
        (math.nan, math.nan, False),  # as Python's ==
    ],
)
def test_strict_equal_checks_types(actual: object, expected: object, equal: bool) -> None:
    assert strict_equal(actual, expected) is equal


def test_check_case_kinds() -> None:
    assert check_case(StrictCase((), "true"), True)
    assert not check_case(StrictCase((), "true"), 1)  # truthy is not enough: a bool is expected
    assert check_case(StrictCase((), "false"), False)
    assert not check_case(StrictCase((), "false"), None)
    assert check_case(StrictCase((), "approx", 2.0, 1e-6), 2.0000001)
    assert not check_case(StrictCase((), "approx", 2.0, 1e-6), "2.0")
    assert not check_case(StrictCase((), "approx", 2.0, 0.5), 2.5)
    assert check_case(StrictCase((), "approx", 2.0, 0.5, True), 2.5)


@pytest.mark.parametrize(
    "value",
    [
        None, True, 0, 2**53, -(10**5000), 2.5, math.inf, -0.0, 1 + 2j, "é\ud800", b"\x00\xff",
        bytearray(b"ab"), [1, (2, {3}), frozenset({"a"})], {"k": {(1, 2): [None]}}, [[[]]],
    ],
    ids=lambda v: type(v).__name__,
)  # fmt: skip
def test_codec_round_trip(value: object) -> None:
    back = decode_value(json.loads(json.dumps(encode_value(value))))  # as it crosses
    assert type(back) is type(value)
    assert strict_equal(back, value)
    if type(value) is float:
        assert math.copysign(1, back) == math.copysign(1, value)


def test_codec_turns_standard_dict_subclasses_into_dicts() -> None:
    for value in (collections.Counter("aab"), collections.OrderedDict(a=1)):
        back = decode_value(encode_value(value))
        assert type(back) is dict and back == dict(value)


class Liar(int):
    def __eq__(self, other: object) -> bool:
        return True

    __hash__ = int.__hash__


@pytest.mark.parametrize("value", [Liar(1), [Liar(1)], object(), {1: object()}, range(3)])
def test_codec_refuses_non_plain_values(value: object) -> None:
    with pytest.raises(CodecError):
        encode_value(value)


def test_codec_refuses_deep_nesting() -> None:
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(CodecError):
        encode_value(deep)


@pytest.mark.parametrize(
    "data",
    [["S", [["l", []]]], ["i", "zz"], ["x", 1], ["b", 2], [], {"s": 1}, ["l", "abc"], ["d", [[1]]]],
)
def test_codec_rejects_malformed_input(data: object) -> None:
    with pytest.raises(CodecError):
        decode_value(data)


def reply(record: str | None, code: int = 0) -> dict:
    return {"timed_out": False, "code": code, "record": record, "truncated": False}


TESTS = strict_tests(humaneval_like("    assert candidate(1) == 2\n    assert candidate(2) == 4\n"))


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ('{"results": [["ok", ["i", "2"]], ["ok", ["i", "4"]]]}', "passed"),
        ('{"results": [["ok", ["i", "2"]], ["ok", 4.0]]}', "passed"),
        ('{"results": [["ok", ["i", "2"]], ["ok", "4"]]}', "assertion"),
        ('{"results": [["ok", ["i", "2"]], ["bad", "Liar is not plain"]]}', "assertion"),
        ('{"results": [["ok", ["i", "2"]]]}', "forged_exit"),
        ('{"results": [["ok", ["S", [["l", []]]]], ["ok", ["i", "4"]]]}', "forged_exit"),
        ('{"results": [["raised", {"exc": "KeyError"}], ["ok", ["i", "4"]]]}', "exception"),
        ('{"results": [["raised", {"exit": 0}], ["ok", ["i", "4"]]]}', "forged_exit"),
        ('{"exc": "SyntaxError"}', "exception"),
        ('{"ok": true}', "forged_exit"),
        ("not json", "forged_exit"),
        ('{"results": 1}{"results": 2}', "forged_exit"),
        (None, "forged_exit"),
    ],
)
def test_strict_verdicts_from_records(record: str | None, reason: str) -> None:
    verdict = classify(reply(record), TESTS, "netns")
    assert verdict.reason == reason
    assert verdict.passed is (reason == "passed")


def test_strict_failure_detail_names_the_test_and_the_types() -> None:
    record = '{"results": [["ok", ["i", "2"]], ["ok", true]]}'
    verdict = classify(reply(record), TESTS, "netns")
    assert verdict.detail == "test 1: expected int 4, got bool True"
