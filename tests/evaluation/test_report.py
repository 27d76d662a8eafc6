"""The pipeline's table: pass@1 with its interval, held-out scores, and the paired comparison."""

from __future__ import annotations

import pytest

from distill.evaluation.report import comparison_table, paired_comparison, summary_table
from distill.evaluation.scoring import pass_metrics, per_problem_pass


def rows_for(passed: list[bool]) -> list[dict]:
    return [
        {"task_id": f"HumanEval/{i}", "passed": p, "strict_passed": p, "reason": "passed"}
        for i, p in enumerate(passed)
    ]


def test_the_table_shows_pass_at_1_with_its_interval_and_the_heldout_scores():
    after = pass_metrics("humaneval", rows_for([True] * 10 + [False] * 10), [1])
    low, high = after["eval/humaneval/pass@1/ci95_low"], after["eval/humaneval/pass@1/ci95_high"]
    assert 0.2 < low < 0.5 < high < 0.8
    table = comparison_table(
        {"teacher": {"ce": 0.12}, "student after": {**after, "ce": 0.3, "top1_agreement": 0.9}}
    )
    lines = table.splitlines()
    assert lines[0].startswith("| model | HumanEval pass@1 [95% CI] | CE on held-out")
    assert lines[2] == "| teacher | - | 0.120 | - |"
    interval = f"[{100 * low:.1f}, {100 * high:.1f}]"
    assert lines[3] == f"| student after | 50.0% {interval} | 0.300 | 90.0% |"


def test_per_problem_pass_averages_a_problems_samples():
    rows = rows_for([True, False]) + [{"task_id": "HumanEval/0", "passed": False}]
    assert per_problem_pass(rows) == {"HumanEval/0": 0.5, "HumanEval/1": 0.0}


def test_paired_comparison_counts_gains_and_losses_on_shared_problems():
    before = {f"t{i}": 0.0 for i in range(8)} | {"t8": 1.0, "only_before": 1.0}
    after = {f"t{i}": 1.0 for i in range(7)} | {"t7": 0.0, "t8": 0.0}
    result = paired_comparison(after, before, ("after", "before"))
    assert (result["gained"], result["lost"]) == (7, 1)
    assert result["delta"] == pytest.approx(6 / 9)
    assert result["p_value"] == pytest.approx(2 * 9 / 256)  # exact sign test, 7 of 8
    assert result["text"].startswith("after vs before: +66.7 points of pass@1 on 9 problems")
    same = paired_comparison(before, before, ("a", "b"))
    assert same["p_value"] == 1.0 and "no difference at the 5% level" in same["text"]


def test_the_summary_shows_each_mode_and_test_set_with_intervals() -> None:
    metrics = {
        "eval/humaneval_plus/num_problems": 164,
        "eval/humaneval_plus/pass@1": 0.5,
        "eval/humaneval_plus/pass@1/ci95_low": 0.42,
        "eval/humaneval_plus/pass@1/ci95_high": 0.58,
        "eval/humaneval_plus/base/pass@1": 0.6,
        "eval/humaneval_plus/plus/pass@1": 0.5,
        "eval/humaneval_plus/strict/num_problems": 0,
        "eval/humaneval_plus/num_samples": 164,
        "eval/humaneval_plus/outcome/passed": 82,
    }
    lines = summary_table(metrics, "humaneval_plus", [1]).splitlines()
    assert lines[2] == "| compatible | 164 | 50.0% [42.0, 58.0] |"
    assert lines[3] == "| base tests | 164 | 60.0% |"
    assert lines[4] == "| plus tests | 164 | 50.0% |"
    assert lines[5] == "| strict | 0 | - |"
