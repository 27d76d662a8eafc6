"""HumanEval+ and MBPP+: EvalPlus's comparison rules, its time limits, and the two test sets,
checked through the real sandbox on the shared data."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from distill.checks import stage_checks
from distill.config import validate
from distill.evaluation.app import run_eval
from distill.evaluation.benchmarks import get_benchmark, load_problems
from distill.evaluation.benchmarks.evalplus_tests import EvalPlusTests, output_passes
from distill.evaluation.benchmarks.humaneval_plus import find_zero_oracle
from distill.evaluation.benchmarks.mbpp_plus import INPUT_TYPES, ORACLES
from distill.evaluation.execution import score_samples
from distill.evaluation.sandbox_codec import Digest, digest_value
from tests.conftest import compose_config

EVALPLUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "evalplus"
pytestmark = pytest.mark.skipif(not EVALPLUS.is_dir(), reason=f"no EvalPlus copy at {EVALPLUS}")


def judged_by(expected, atol=0.0, num_base=None, oracle=None, decides=False) -> EvalPlusTests:
    n = len(expected)
    return EvalPlusTests(
        "toy/0", tuple((i,) for i in range(n)), n if num_base is None else num_base,
        tuple(expected), (1.0,) * n, atol, oracle, decides,
    )  # fmt: skip


def ok(*values):
    return [("ok", v) for v in values]


def test_exact_outputs_pass_and_a_wrong_one_fails_naming_the_input() -> None:
    assert judged_by([1, [2, 3]]).judge(ok(1, [2, 3]))[0] == "passed"
    reason, detail, parts = judged_by([1, [2, 3]]).judge(ok(1, [2, 4]))
    assert (reason, parts) == ("assertion", {"base": False, "plus": False})
    assert "input 1" in detail and "[2, 3]" in detail


def test_floats_get_a_default_tolerance_that_stays_for_the_later_inputs() -> None:
    # EvalPlus sets atol = 1e-6 on the first float output and keeps it for the test set.
    assert judged_by([0.1 + 0.2]).judge(ok(0.3))[0] == "passed"
    assert judged_by([1.0]).judge(ok(1.001))[0] == "assertion"
    assert judged_by([0.5, [1.0, 2.0]]).judge(ok(0.5, [1.0, 2.0000000001]))[0] == "passed"
    assert judged_by([0.5, [1.0, 2.0]]).judge(ok(0.5, (1.0, 2.0000000001)))[0] == "assertion"
    assert output_passes(3, 3.0000001, 1e-6, False) == (False, 1e-6)  # int is not float
    assert judged_by([2.0], atol=0.1).judge(ok(2.05))[0] == "passed"


def test_base_and_plus_are_judged_apart() -> None:
    tests = judged_by([1, 2, 3], num_base=2)
    assert tests.judge(ok(1, 2, 3))[2] == {"base": True, "plus": True}
    assert tests.judge(ok(1, 2, 4))[2] == {"base": True, "plus": False}
    assert tests.judge(ok(1, 5, 3))[2] == {"base": False, "plus": False}
    timed_out = [*ok(1, 2), ("failed", ("timeout", "per-input time limit"))]
    assert tests.judge(timed_out) == (
        "timeout",
        "per-input time limit",
        {"base": True, "plus": False},
    )
    assert tests.judge(ok(1))[0] == "timeout"  # the run stopped before input 1


def test_large_outputs_compare_by_digest_as_python_equality_would() -> None:
    assert Digest.of([1, 2.0, True]) == Digest.of([1, 2, 1])
    assert Digest.of({3, 1, 2}) == Digest.of(frozenset({2, 3, 1}))
    assert Digest.of({"b": 1, "a": 2}) == Digest.of({"a": 2, "b": 1})
    assert Digest.of([1, 2]) != Digest.of((1, 2)) and Digest.of([0.5]) != Digest.of([0.25])
    big = list(range(50_000))
    tests = judged_by([Digest(digest_value(big))])
    assert tests.judge(ok(Digest(digest_value(big))))[0] == "passed"
    assert tests.judge(ok(Digest(digest_value(big[:-1]))))[0] == "assertion"


def test_the_special_oracles() -> None:
    zero = EvalPlusTests("HumanEval/32", (([-6, 11, -6, 1],),), 1, (1.0,), (1.0,), 1e-4,
                         find_zero_oracle, True)  # fmt: skip
    assert zero.judge(ok(3.0))[0] == "passed"  # another root of (x-1)(x-2)(x-3)
    assert zero.judge(ok(2.5))[0] == "assertion"
    sets = judged_by([(4, 5)], oracle=ORACLES["similar_elements"])
    assert sets.judge(ok([5, 4]))[0] == "passed" and sets.judge(ok([4]))[0] == "assertion"
    sum_div = judged_by([7], oracle=ORACLES["sum_div"])
    assert sum_div.judge(ok(0))[0] == "passed" and sum_div.judge(ok(6))[0] == "assertion"
    assert judged_by([None], oracle=ORACLES["are_equivalent"]).judge(ok("x"))[0] == "passed"


def test_mbpp_plus_inputs_get_their_types_back() -> None:
    problems = {p.task_id: p for p in load_problems("mbpp_plus", None, EVALPLUS)}
    assert type(problems["Mbpp/2"].extra["inputs"][0][0]) is tuple
    assert type(problems["Mbpp/252"].extra["inputs"][0][0]) is complex
    assert all(type(a) is tuple for a in problems["Mbpp/580"].extra["inputs"][0])
    assert len(INPUT_TYPES) > 60


def score(name: str, task_id: str, samples: list[str]):
    (problem,) = [p for p in load_problems(name, None, EVALPLUS) if p.task_id == task_id]
    pairs = [(task_id, s) for s in samples]
    return score_samples({task_id: problem}, pairs, timeout_s=5.0, workers=2, progress=False)


def test_plus_inputs_catch_what_the_base_ones_miss() -> None:
    # HumanEval/0 with a bug only large inputs show: it looks at the first six numbers.
    wrong = (
        "    numbers = sorted(numbers[:6])\n"
        "    return any(b - a < threshold for a, b in zip(numbers, numbers[1:]))\n"
    )
    loops = "    if len(numbers) > 6:\n        while True:\n            pass\n" + wrong
    forged = "    import os\n    os.write(3, b'{\"ok\": true}')\n    os._exit(0)\n"
    canonical = get_benchmark("humaneval_plus")
    problem = load_problems("humaneval_plus", 1, EVALPLUS)[0]
    right, short, slow, forge = score(
        "humaneval_plus", "HumanEval/0", [problem.canonical_solution, wrong, loops, forged]
    )
    assert canonical.parts == ("base", "plus")
    assert (right.passed, right.parts) == (True, {"base": True, "plus": True})
    assert (short.passed, short.reason, short.parts) == (
        False,
        "assertion",
        {"base": True, "plus": False},
    )
    assert (slow.reason, slow.parts) == ("timeout", {"base": True, "plus": False})
    assert (forge.passed, forge.reason) == (False, "forged_exit")


def test_plus_inputs_run_only_where_the_base_ones_passed() -> None:
    """A sample that fails a base input never runs its plus inputs (a failed base fails plus
    too): here each plus input would sleep 0.9 s, a minute for HumanEval/0's ~750 (capped)."""
    problem = load_problems("humaneval_plus", 1, EVALPLUS)[0]
    num_base = problem.extra["num_base"]
    slow_plus = (
        "    import time\n    global CALLS\n    CALLS = globals().get('CALLS', 0) + 1\n"
        f"    if CALLS > {num_base}:\n        time.sleep(0.9)\n    return None\n"
    )
    start = time.monotonic()
    (result,) = score("humaneval_plus", "HumanEval/0", [slow_plus])
    assert (result.reason, result.parts) == ("assertion", {"base": False, "plus": False})
    assert "input 0:" in result.detail
    assert time.monotonic() - start < 30


def test_eval_app_scores_an_evalplus_samples_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DISTILL_EVALPLUS_PATH", str(EVALPLUS))
    problems = load_problems("mbpp_plus", None, EVALPLUS)[:3]
    rows = [{"task_id": p.task_id, "solution": p.canonical_solution} for p in problems]
    rows[1]["solution"] = rows[1]["solution"].replace("return ", "return 1 + ", 1)
    samples = tmp_path / "mbpp_plus_samples.jsonl"
    samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = compose_config("eval", ["eval=mbpp_plus", f"eval.samples={samples}"])
    validate(cfg, *stage_checks("eval"))
    metrics = run_eval(cfg, tmp_path / "run")
    assert metrics["eval/mbpp_plus/plus/pass@1"] == pytest.approx(2 / 3)
    assert metrics["eval/mbpp_plus/pass@1"] == metrics["eval/mbpp_plus/plus/pass@1"]
    assert metrics["eval/mbpp_plus/num_problems"] == 3
    low, high = (metrics[f"eval/mbpp_plus/base/pass@1/ci95_{s}"] for s in ("low", "high"))
    assert low < metrics["eval/mbpp_plus/base/pass@1"] <= high


@pytest.mark.parametrize(
    "value", [["a", "bc", ""], ("a", "b"), [["x"], ("y", "z")], [1, "a", None]]
)
def test_the_flat_digest_path_writes_what_the_item_path_does_for_text_and_mixtures(value) -> None:
    """Sequences of text, or of mixed kinds, are written item by item (numbers-only ones go
    through one float64 array: see the next test)."""
    import hashlib

    from distill.evaluation import sandbox_codec

    slow = hashlib.sha256()
    slow.update(b"l[" if type(value) is list else b"t[")
    for item in value:
        sandbox_codec._feed(slow, item, 1)
    slow.update(b"]")
    assert digest_value(value) == slow.hexdigest()


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ([1, 2.0, True], [1.0, 2, 1], True),  # Python's equal numbers digest alike
        ([0.0, 1], [-0.0, 1], True),
        ([2.5, float("inf")], [2.5, float("inf")], True),
        ([1, 2], (1, 2), False),  # as Python: a list is never a tuple
        ([1, 2], [1, 3], False),
        ([2**53 + 1], [float(2**53)], False),  # beyond float64's exact ints: written exactly
        ([2**60, 1.5], [2**60, 1.5], True),
        ([10**400, 1], [10**400, 1], True),  # past float64's range: written exactly
        ([10**400, 1], [10**400 + 1, 1], False),
        ([1e300], [int(1e300)], True),
        ([float("nan"), 2**60], [float("nan"), 2**60], True),
        (list(range(10**5)), [float(i) for i in range(10**5)], True),
        (list(range(10**5)), [*range(10**5 - 1), 0], False),
    ],
)
def test_numeric_sequences_digest_alike_exactly_when_python_calls_them_equal(a, b, equal) -> None:
    assert (digest_value(a) == digest_value(b)) is equal
    assert (Digest.of([a, "x"]) == Digest.of([b, "x"])) is equal  # nested too


@pytest.mark.parametrize(
    "value",
    [[1, 2.5, True, None], ["a", "b"], [1, 2**60], [float("nan"), 1], {1.5, 2}, (), [0.0, -0.0]],
)
def test_flat_sequences_encode_as_item_by_item(value) -> None:
    from distill.evaluation.sandbox_codec import _encode, decode_value, encode_value

    item_by_item = [_encode(x, 1, [10**6]) for x in value]
    encoded = encode_value(value)
    assert encoded[1] == item_by_item or repr(encoded[1]) == repr(item_by_item)  # NaN != NaN
    back = decode_value(json.loads(json.dumps(encoded)))
    assert type(back) is type(value) and repr(back) == repr(value)


def test_stored_expected_outputs_load_as_computed_and_a_damaged_file_is_recomputed(
    tmp_path, monkeypatch, caplog
) -> None:
    from distill.evaluation.benchmarks.evalplus import ground_truth_dir

    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path))
    problems = load_problems("mbpp_plus", None, EVALPLUS)[:2]

    def truth() -> dict:
        bench = get_benchmark("mbpp_plus")
        bench._truth.clear()
        bench.prepare(problems)
        return {p.task_id: bench.tests(p).expected for p in problems}

    computed = truth()
    (stored,) = ground_truth_dir().iterdir()
    assert truth() == computed  # loaded from the file
    stored.write_bytes(b"\x00not marshal")
    again = truth()  # computed again (Mbpp/2's tuples of a set may come in another order)
    assert {k: len(v) for k, v in again.items()} == {k: len(v) for k, v in computed.items()}
    assert str(stored) in caplog.text and "computing the expected outputs again" in caplog.text
    assert truth() == again  # and stored again
