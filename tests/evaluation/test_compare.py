"""`distill compare`: runs and multirun sweeps side by side (table, Markdown, CSV, PNG)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from distill.errors import UserError
from distill.evaluation.compare import (
    compare,
    job_names,
    load_runs,
    metric_keys,
    panels,
    sort_runs,
    table_rows,
)


def _run(path: Path, metrics: dict, overrides: list[str] | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps(metrics))
    if overrides is not None:
        (path / ".hydra").mkdir()
        (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    return path


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    single = _run(
        tmp_path / "outputs" / "eval" / "baseline",
        {
            "eval/humaneval/pass@1": 0.25,
            "eval/humaneval/strict/pass@1": 0.2,
            "eval/humaneval/pass@10": 0.5,
            "eval/humaneval_plus/base/pass@1": 0.3,
            "eval/humaneval_plus/base/pass@1/ci95_low": 0.1,
            "eval/humaneval/isolation": "netns",
            "train/loss_last": 1.5,
        },
    )
    sweep = tmp_path / "multirun" / "pipeline" / "t0"
    for num, loss in enumerate(["ce", "kl", "ce_kl"]):
        _run(
            sweep / str(num),
            {"eval/humaneval/pass@1": 0.1 * num, "eval/mbpp/pass@1": 0.3},
            ["experiment=tiny_smoke", f"loss={loss}"],
        )
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    return [single, sweep]


def test_sweep_expands_to_jobs_named_by_their_overrides(runs) -> None:
    loaded = load_runs(runs)
    assert [r.name for r in loaded] == ["baseline", "loss=ce", "loss=kl", "loss=ce_kl"]
    assert loaded[2].metrics["eval/humaneval/pass@1"] == pytest.approx(0.1)


def test_default_metrics_are_pass_at_k_in_order(runs) -> None:
    keys = metric_keys(load_runs(runs))
    assert keys == [
        "eval/humaneval/pass@1",
        "eval/humaneval/pass@10",
        "eval/humaneval/strict/pass@1",
        "eval/humaneval_plus/base/pass@1",  # a benchmark's test set on its own
        "eval/mbpp/pass@1",
    ]
    rows = table_rows(load_runs(runs), keys)
    assert rows[1] == ["baseline", "25.0%", "50.0%", "20.0%", "30.0%", "-"]
    assert rows[3] == ["loss=kl", "10.0%", "-", "-", "-", "30.0%"]


def test_compare_writes_markdown_csv_and_png(runs, tmp_path) -> None:
    out = tmp_path / "report"
    table = compare(runs, out, ["eval/humaneval/pass@1", "train/loss_last"])
    assert table.splitlines()[0].split() == ["run", "eval/humaneval/pass@1", "train/loss_last"]
    assert "loss=ce_kl  20.0%" in table
    md = (out / "comparison.md").read_text()
    assert "| baseline | 25.0% | 1.5 |" in md and "| loss=ce | 0.0% | - |" in md
    with (out / "comparison.csv").open() as f:
        rows = list(csv.DictReader(f))
    # Sorted by the first metric, best (highest pass@1) first.
    assert [r["run"] for r in rows] == ["baseline", "loss=ce_kl", "loss=kl", "loss=ce"]
    assert float(rows[0]["eval/humaneval/pass@1"]) == 0.25 and rows[3]["train/loss_last"] == ""
    png = (out / "comparison.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 5000


def test_runs_without_a_sweep_are_plotted_side_by_side_per_benchmark(tmp_path) -> None:
    a = _run(tmp_path / "a", {"eval/humaneval/pass@1": 0.5, "eval/humaneval/strict/pass@1": 0.4})
    b = _run(tmp_path / "b", {"eval/humaneval/pass@1": 0.25, "eval/mbpp/pass@1": 0.1})
    runs = load_runs([a, b])
    drawn = panels(runs, [*metric_keys(runs), "train/loss_last"])
    assert [(p.xlabel, p.ylabel, p.xs) for p in drawn] == [
        ("run", "eval/humaneval pass@k (%)", ["a", "b"]),
        ("run", "eval/mbpp pass@k (%)", ["a", "b"]),
        ("run", "train/loss_last", ["a", "b"]),
    ]
    humaneval = drawn[0].series
    assert list(humaneval) == ["pass@1", "strict/pass@1"]  # grouped bars, one per key
    assert humaneval["pass@1"] == [50.0, 25.0]
    assert humaneval["strict/pass@1"][0] == 40.0 and math.isnan(humaneval["strict/pass@1"][1])
    assert not any(p.numeric for p in drawn)


def test_losses_sort_low_first_scores_high_first_and_missing_last(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    values = [(0.5, 0.7, "1"), (0.3, 0.6, "0.1"), (None, 0.9, "0.5")]
    for num, (kl, agree, lr) in enumerate(values):
        metrics = {"val/top1_agreement": agree} | ({} if kl is None else {"val/kl": kl})
        _run(sweep / str(num), metrics, ["loss=kl", f"train.optimizer.lr={lr}"])
    runs = load_runs([sweep])
    assert runs[0].params == {"train.optimizer.lr": "1"}
    assert [r.params["train.optimizer.lr"] for r in sort_runs(runs, "val/kl")] == [
        "0.1",
        "1",
        "0.5",
    ]
    by_agreement = sort_runs(runs, "val/top1_agreement")
    assert [r.params["train.optimizer.lr"] for r in by_agreement] == ["0.5", "1", "0.1"]
    assert [r.name for r in sort_runs(runs, "val/kl", "desc")][:2] == [runs[0].name, runs[1].name]
    assert sort_runs(runs, "val/kl", "none") == runs
    with pytest.raises(UserError, match="--order"):
        sort_runs(runs, "val/kl", "up")
    # A numeric parameter is plotted as a line, the metric against its sorted values.
    (kl_panel, _) = panels(runs, ["val/kl", "val/top1_agreement"])
    assert kl_panel.numeric and kl_panel.xs == ["0.1", "0.5", "1"]
    assert kl_panel.series["val/kl"][0] == 0.3 and math.isnan(kl_panel.series["val/kl"][1])
    compare([sweep], tmp_path / "out", ["val/kl", "val/top1_agreement"])
    assert (tmp_path / "out" / "comparison.png").read_bytes().startswith(b"\x89PNG")


def test_same_names_get_their_parent(tmp_path) -> None:
    a = _run(tmp_path / "a" / "run", {"eval/humaneval/pass@1": 0.1})
    b = _run(tmp_path / "b" / "run", {"eval/humaneval/pass@1": 0.2})
    assert [r.name for r in load_runs([a, b])] == ["a/run", "b/run"]


def test_jobs_without_differing_overrides_use_folder_names(tmp_path) -> None:
    jobs = [_run(tmp_path / str(i), {}, ["experiment=tiny_smoke"]) for i in range(2)]
    assert job_names(jobs) == ["job 0", "job 1"]


def test_missing_metrics_name_the_fix(tmp_path) -> None:
    with pytest.raises(UserError, match="no metrics.json here or in its subfolders"):
        load_runs([tmp_path])
    run = _run(tmp_path / "r", {"train/loss_last": 1.0})
    with pytest.raises(UserError, match="--metric"):
        compare([run], tmp_path / "out")


def test_distill_compare_command(runs, tmp_path) -> None:
    out = tmp_path / "cli"
    args = [*map(str, runs), "--metric", "eval/humaneval/pass@1", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "distill", "compare", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "loss=kl" in done.stdout and "10.0%" in done.stdout
    assert {p.name for p in out.iterdir()} == {"comparison.md", "comparison.csv", "comparison.png"}
    bad = subprocess.run(
        [sys.executable, "-m", "distill", "compare", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "no metrics.json" in bad.stderr


def _scored_run(path: Path, passed: list[bool], overrides: list[str]) -> Path:
    """A run whose metrics.json names a results file with one verdict per problem."""
    rows = [{"task_id": f"HumanEval/{i}", "passed": p} for i, p in enumerate(passed)]
    metrics = {
        "eval/humaneval/pass@1": sum(passed) / len(passed),
        "eval/humaneval/pass@1/ci95_low": 0.1,
        "eval/humaneval/pass@1/ci95_high": 0.9,
        "eval/humaneval/results_file": "student_results.jsonl",
    }
    _run(path, metrics, overrides)
    (path / "eval").mkdir()
    (path / "eval" / "student_results.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows)
    )
    return path


def test_seeds_pool_per_arm_and_arms_are_tested_against_the_best(tmp_path) -> None:
    sweep = tmp_path / "sweep"
    better = [True] * 30 + [False] * 10  # 75%: 20 problems more than `worse`
    worse = [True] * 10 + [False] * 30
    close = [True] * 29 + [False] * 11  # one problem from `better`
    grid = [("ce", 0, better), ("ce", 1, better), ("kl", 0, worse), ("kl", 1, worse[::-1]),
            ("jsd", 0, close), ("jsd", 1, close)]  # fmt: skip
    for num, (loss, seed, passed) in enumerate(grid):
        _scored_run(sweep / str(num), passed, [f"loss={loss}", f"seed={seed}"])
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    runs = sort_runs(load_runs([sweep]), "eval/humaneval/pass@1")
    assert [r.name for r in runs] == [
        "loss=ce (2 seeds)",
        "loss=jsd (2 seeds)",
        "loss=kl (2 seeds)",
    ]
    assert runs[2].metrics["eval/humaneval/pass@1"] == pytest.approx(0.25)
    assert runs[2].metrics["seeds"] == 2
    # kl's two seeds passed different problems: per problem it averages 0.5 on 20 problems.
    assert sorted(set(runs[2].per_problem["eval/humaneval/pass@1"].values())) == [0.0, 0.5]
    rows = table_rows(runs, ["eval/humaneval/pass@1"])
    assert rows[0][-1] == "vs best, paired (pass@1)"
    assert rows[1][1:] == ["75.0% ±0.0", "best"]
    assert rows[2][2].endswith("(n.s.)")  # one problem apart
    assert float(rows[3][2].removeprefix("p=")) < 0.01  # 20 problems apart


def test_cells_show_the_interval_over_problems(tmp_path) -> None:
    run = _scored_run(tmp_path / "one", [True, False, True, True], [])
    rows = table_rows(load_runs([run]), ["eval/humaneval/pass@1"])
    assert rows[1] == ["one", "75.0% [10.0, 90.0]"]
