"""The study's headline: teacher, student before and student after (each seed), with intervals.

    python experiments/prune_heal/headline.py --humaneval outputs/prune_heal/headline_humaneval \
        [--mbpp outputs/prune_heal/headline_mbpp]

`--humaneval` is the pipeline sweep over seeds (one job per seed; the first scores the teacher and
the untrained student, the others read those rows from `baselines=`). `--mbpp` holds one
`distill eval eval=mbpp ...` run directory per model: `teacher/`, `student_before/`, `seed<N>/`.
Per model and benchmark: pass@1 with its 95% bootstrap interval over problems; per trained seed:
the exact or Monte Carlo paired permutation test against the untrained student, and the share of
the teacher-student gap it recovers; over seeds: the per-problem mean (the interval then covers
problems, not seeds) tested the same way. Writes `headline.csv` (with the command, commit, date and
machine), `headline.md` and `headline.png` next to this file.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import yaml

from distill.evaluation.intervals import bootstrap_interval
from distill.evaluation.report import paired_comparison
from distill.evaluation.samples import read_jsonl
from distill.evaluation.scoring import per_problem_pass

HERE = Path(__file__).resolve().parent


def _passes(results: Path) -> dict[str, float]:
    return per_problem_pass(read_jsonl(results), 1)


def _command(run: Path, stage: str) -> str:
    overrides = yaml.safe_load((run / ".hydra/overrides.yaml").read_text())
    return f"distill {stage} " + " ".join(overrides)


Model = tuple[str, dict[str, float], float | None, str]  # name, per-problem pass@1, CE, command


def finished_jobs(sweeps: list[Path]) -> list[Path]:
    """The jobs of pipeline sweeps whose trained student is scored (metrics.json comes earlier)."""
    jobs = sorted(
        j for s in sweeps for j in s.iterdir() if (j / "eval/student_after_results.jsonl").is_file()
    )
    if not jobs:
        raise SystemExit(f"{sweeps}: no finished job (no */eval/student_after_results.jsonl)")
    return jobs


def pipeline_model(job: Path, scored: str, name: str) -> Model:
    """One model a pipeline job scored: `scored` is teacher, student_before or student_after."""
    ce = json.loads((job / "metrics.json").read_text())[f"pipeline/{scored}/ce"]
    return name, _passes(job / f"eval/{scored}_results.jsonl"), ce, _command(job, "pipeline")


def baseline_models(jobs: list[Path]) -> list[Model]:
    """The teacher and the untrained student, from the job that scored them (the others read
    them from `baselines=`)."""
    models = []
    for name in ("teacher", "student_before"):
        job = next((j for j in jobs if (j / f"eval/{name}_results.jsonl").is_file()), None)
        if job is None:
            raise SystemExit(f"no finished job scored the {name} (eval/{name}_results.jsonl)")
        models.append(pipeline_model(job, name, name))
    return models


def humaneval_models(sweep: Path) -> list[Model]:
    """The teacher, the untrained student and each seed's trained student of a pipeline sweep."""
    jobs = finished_jobs([sweep])
    seeds = {yaml.safe_load((j / ".hydra/config.yaml").read_text())["seed"]: j for j in jobs}
    # job folders sort by their overrides, not by seed
    trained = [pipeline_model(j, "student_after", f"seed{s}") for s, j in sorted(seeds.items())]
    return baseline_models(jobs) + trained


def mbpp_models(folder: Path) -> list[tuple[str, dict[str, float], float | None, str]]:
    """The same rows from one `distill eval eval=mbpp` run directory per model."""
    models = []
    order = {"teacher": 0, "student_before": 1}  # then seed0, seed1, ...
    for run in sorted(folder.iterdir(), key=lambda p: (order.get(p.name, 2), p.name)):
        results = sorted((run / "eval").glob("*_mbpp_results.jsonl"))
        if results:
            models.append((run.name, _passes(results[0]), None, _command(run, "eval")))
    return models


def rows_for(benchmark: str, models: list) -> list[dict[str, object]]:
    by_name = {name: passes for name, passes, _, _ in models}
    teacher, before = by_name["teacher"], by_name["student_before"]
    seeds = [name for name in by_name if name.startswith("seed")]
    if seeds:  # the per-problem mean over seeds: one more "model"
        mean = {t: sum(by_name[s][t] for s in seeds) / len(seeds) for t in before}
        models = [*models, ("seed mean", mean, None, "")]
    gap = sum(teacher.values()) / len(teacher) - sum(before.values()) / len(before)
    rows = []
    for name, passes, ce, command in models:
        values = [passes[t] for t in sorted(passes)]
        low, high = bootstrap_interval(values)
        row: dict[str, object] = {
            "benchmark": benchmark,
            "model": name,
            "problems": len(values),
            "pass@1": sum(values) / len(values),
            "ci95_low": low,
            "ci95_high": high,
            "heldout_ce": ce,
        }
        if name not in ("teacher", "student_before"):
            paired = paired_comparison(passes, before, (name, "student before"))
            row.update(
                gained=paired["gained"],
                lost=paired["lost"],
                p_value=paired["p_value"],
                gap_recovered=paired["delta"] / gap if gap else None,
            )
        row["command"] = command
        rows.append(row)
    return rows


def provenance() -> dict[str, str]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "commit": commit,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
    }


def markdown(rows: list[dict[str, object]]) -> str:
    lines = [
        "| benchmark | model | problems | pass@1 [95% CI] | held-out CE | gained / lost vs before "
        "| p | gap recovered |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ce = f"{r['heldout_ce']:.3f}" if r["heldout_ce"] is not None else ""
        paired = (
            [
                f"{r['gained']} / {r['lost']}",
                f"{r['p_value']:.3g}",
                f"{100 * r['gap_recovered']:.0f}%",
            ]
            if "p_value" in r
            else ["", "", ""]
        )
        interval = (
            f"{100 * r['pass@1']:.1f}% [{100 * r['ci95_low']:.1f}, {100 * r['ci95_high']:.1f}]"
        )
        lines.append(
            f"| {r['benchmark']} | {r['model']} | {r['problems']} | {interval} | {ce} | "
            + " | ".join(paired)
            + " |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, object]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    benchmarks = list(dict.fromkeys(r["benchmark"] for r in rows))
    fig, axes = plt.subplots(1, len(benchmarks), figsize=(5 * len(benchmarks), 3.6), squeeze=False)
    for ax, bench in zip(axes[0], benchmarks, strict=True):
        mine = [r for r in rows if r["benchmark"] == bench]
        x = range(len(mine))
        means = [100 * r["pass@1"] for r in mine]
        errors = [
            [100 * (r["pass@1"] - r["ci95_low"]) for r in mine],
            [100 * (r["ci95_high"] - r["pass@1"]) for r in mine],
        ]
        shade = {"teacher": "#555555", "student_before": "#bbbbbb"}  # trained students: blue
        colors = [shade.get(str(r["model"]), "#2a7ab0") for r in mine]
        ax.bar(x, means, yerr=errors, color=colors, capsize=3)
        ax.set_xticks(list(x), [str(r["model"]).replace("student_", "") for r in mine], rotation=30)
        ax.set_ylabel("pass@1 (%), 95% CI over problems")
        ax.set_title(f"{bench} ({mine[0]['problems']} problems)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def write_table(rows: list[dict[str, object]], out: Path, stem: str, extra: str = "") -> str:
    """`<stem>.csv` (with commit, date and machine), `<stem>.md` (the markdown table, then
    `extra`) and `<stem>.png` in `out`; returns the markdown."""
    stamp = provenance()
    fields = list(dict.fromkeys(k for r in rows for k in r)) + list(stamp)
    with (out / f"{stem}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({**stamp, **r} for r in rows)  # a row carried over keeps its own
    text = markdown(rows) + extra
    (out / f"{stem}.md").write_text(text + "\n")
    plot(rows, out / f"{stem}.png")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--humaneval", type=Path, required=True)
    parser.add_argument("--mbpp", type=Path)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    rows = rows_for("humaneval", humaneval_models(args.humaneval))
    if args.mbpp:
        rows += rows_for("mbpp", mbpp_models(args.mbpp))
    text = write_table(rows, args.out, "headline")
    print(text)


if __name__ == "__main__":
    main()
