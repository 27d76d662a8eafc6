"""Collect the prune-and-heal runs into results.csv and print the table (README's numbers).

Every model's stored raw generations (a run that read its teacher and untrained student from
`baselines=` takes theirs from another run given with the same student layers: greedy decoding
makes them the same) are post-processed again with the current
POSTPROCESS_VERSION and executed in the sandbox, so runs scored under older versions compare
fairly. Each row records the run's overrides (its command), the commit, date and machine.

    python experiments/prune_heal/collect.py outputs/heal/* [--out experiments/prune_heal]
"""

from __future__ import annotations

import argparse
import csv
import datetime
import functools
import json
import os
import platform
import subprocess
from pathlib import Path

import yaml

from distill.config import EvalConfig
from distill.evaluation.benchmarks import load_humaneval
from distill.evaluation.intervals import bootstrap_interval
from distill.evaluation.prompts import POSTPROCESS_VERSION, postprocess
from distill.evaluation.report import paired_comparison
from distill.evaluation.scoring import per_problem_pass, score

MODELS = ("teacher", "student_before", "student_after")


@functools.cache
def rescore(samples: Path) -> dict[str, float]:
    """Per-problem pass@1 of a HumanEval chat samples file, its raw answers post-processed anew
    (cached: runs that share a baseline share its samples file)."""
    rows = [json.loads(line) for line in samples.open()]
    problems = {p.task_id: p for p in _humaneval()}
    used = [problems[r["task_id"]] for r in rows]
    samples = [
        {
            "task_id": r["task_id"],
            "completion": postprocess(r["raw"], problems[r["task_id"]], "chat"),
        }
        for r in rows
    ]
    results, _ = score(used, samples, EvalConfig(k=[1], workers=2), progress=False)
    return per_problem_pass(results, 1)


@functools.cache
def _humaneval() -> tuple:
    return tuple(load_humaneval(None))


def layers(run: Path) -> tuple[int, ...]:
    cfg = yaml.safe_load((run / ".hydra/config.yaml").read_text())
    return tuple(cfg["student"]["keep_layers"])


def samples_file(run: Path, model: str, runs: list[Path]) -> Path:
    """``run``'s samples of ``model``, else those of a run with the same student layers."""
    own = run / f"eval/{model}_samples.jsonl"
    if own.is_file() or model == "student_after":
        return own
    same = [r for r in runs if layers(r) == layers(run) or model == "teacher"]
    return next(f for r in same if (f := r / f"eval/{model}_samples.jsonl").is_file())


def row_for(run: Path, runs: list[Path]) -> dict[str, object]:
    overrides = yaml.safe_load((run / ".hydra/overrides.yaml").read_text())
    cfg = yaml.safe_load((run / ".hydra/config.yaml").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    passes = {m: rescore(samples_file(run, m, runs)) for m in MODELS}
    row: dict[str, object] = {
        "run": run.name,
        "layers": len(cfg["student"]["keep_layers"]),
        "loss": " + ".join(f"{k} {v['weight']}" for k, v in cfg["loss"]["components"].items()),
        "lr": cfg["train"]["optimizer"]["lr"],
        "steps": cfg["train"]["max_steps"],
        "problems": len(passes["teacher"]),
    }
    for m in MODELS:
        values = list(passes[m].values())
        low, high = bootstrap_interval(values)
        row[f"{m}_pass@1"] = sum(values) / len(values)
        row[f"{m}_ci95"] = f"{low:.2f}-{high:.2f}"
        row[f"{m}_ce"] = metrics[f"pipeline/{m}/ce"]
    paired = paired_comparison(passes["student_after"], passes["student_before"], ("a", "b"))
    row.update(gained=paired["gained"], lost=paired["lost"], p_value=paired["p_value"])
    row.update(
        postprocess=POSTPROCESS_VERSION,
        command="distill pipeline " + " ".join(overrides),
        commit=subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        date=datetime.date.today().isoformat(),
        machine=f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
    )
    return row


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| run | layers | loss | lr | steps | teacher | before | after | gained / lost | p |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [f"{100 * float(r[f'{m}_pass@1']):.0f}% [{r[f'{m}_ci95']}]" for m in MODELS]
        lines.append(
            f"| {r['run']} | {r['layers']} | {r['loss']} | {r['lr']} | {r['steps']} | "
            + " | ".join(cells)
            + f" | {r['gained']} / {r['lost']} | {float(r['p_value']):.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    runs = [run for run in args.runs if (run / "metrics.json").is_file()]
    rows = [row_for(run, runs) for run in runs]
    with (args.out / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(table(rows))


if __name__ == "__main__":
    main()
