"""`distill compare RUN_DIR...`: several runs' metrics side by side.

Each RUN_DIR holds a `metrics.json`, or is a Hydra multirun sweep directory whose job folders do;
a sweep expands to its jobs, each named by the overrides that differ between them. Writes a
Markdown table, a CSV and a bar chart PNG of pass@k per run, and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from distill.config import UserError

METRICS_FILE = "metrics.json"
PASS_AT_K = re.compile(r"^eval/[^/]+/(strict/)?pass@\d+$")


@dataclass(frozen=True)
class Run:
    """One run to compare: its display name, folder and metrics.json."""

    name: str
    path: Path
    metrics: dict[str, Any]


def load_runs(paths: Sequence[Path]) -> list[Run]:
    """Every run under ``paths`` (sweeps expanded to their jobs), with unique names.

    Raises:
        UserError: If a path has no metrics.json, itself or in any job folder.
    """
    named: list[tuple[str, Path]] = []
    for path in map(Path, paths):
        if (path / METRICS_FILE).is_file():
            named.append((path.name or str(path), path))
            continue
        jobs = sorted(
            (p for p in path.glob(f"*/{METRICS_FILE}")),
            key=lambda p: (not p.parent.name.isdigit(), _num(p.parent.name), p.parent.name),
        )
        if not jobs:
            raise UserError(
                f"{path}: no {METRICS_FILE} here or in its subfolders: give a run directory "
                "(outputs/<stage>/<time>) or a multirun sweep directory (multirun/<stage>/<time>)"
            )
        named += zip(job_names([j.parent for j in jobs]), [j.parent for j in jobs], strict=True)
    names = [name for name, _ in named]
    runs = []
    for name, path in named:
        if names.count(name) > 1:  # two sweeps with the same grid, or two runs called alike
            name = f"{path.parent.name}/{name}"
        runs.append(Run(name, path, json.loads((path / METRICS_FILE).read_text())))
    return runs


def job_names(jobs: Sequence[Path]) -> list[str]:
    """Name sweep jobs by their overrides that not every job shares (else by folder name)."""
    overrides = [_overrides(job) for job in jobs]
    shared = set.intersection(*(set(o) for o in overrides)) if overrides else set()
    names = []
    for job, items in zip(jobs, overrides, strict=True):
        varying = [o for o in items if o not in shared]
        names.append(",".join(varying) if varying else f"job {job.name}")
    return names


def metric_keys(runs: Sequence[Run], chosen: Sequence[str] | None = None) -> list[str]:
    """``chosen``, or every ``eval/<benchmark>/[strict/]pass@k`` key of any run, in order."""
    if chosen:
        return list(chosen)
    keys = {k for run in runs for k, v in run.metrics.items() if PASS_AT_K.match(k)}
    return sorted(keys, key=lambda k: (k.split("/")[1], "/strict/" in k, _num(k.rsplit("@", 1)[1])))


def table_rows(runs: Sequence[Run], keys: Sequence[str]) -> list[list[str]]:
    """Header and one row per run; pass@k and other fractions as percentages, "-" if missing."""
    rows = [["run", *keys]]
    for run in runs:
        rows.append([run.name, *(_cell(run.metrics.get(key), key) for key in keys)])
    return rows


def markdown(rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]])


def plain(rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, for the terminal."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)


def write_csv(path: Path, runs: Sequence[Run], keys: Sequence[str]) -> None:
    """Raw values (not percentages), one row per run, with each run's folder."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["run", "path", *keys])
        for run in runs:
            writer.writerow([run.name, str(run.path), *(run.metrics.get(k, "") for k in keys)])


def bar_chart(path: Path, runs: Sequence[Run], keys: Sequence[str]) -> None:
    """Grouped bars: one group per run, one bar per metric (in %), its value written above it."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    width = 0.8 / max(len(keys), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(runs) * max(len(keys), 1) ** 0.5), 4.5))
    for i, key in enumerate(keys):
        values = [100 * _float(run.metrics.get(key)) for run in runs]
        xs = [r + (i - (len(keys) - 1) / 2) * width for r in range(len(runs))]
        bars = ax.bar(xs, values, width, label=key)
        labels = [f"{v:.1f}" if v == v else "-" for v in values]  # NaN: the run lacks it
        ax.bar_label(bars, labels=labels, fontsize=7)
    ax.set_xticks(range(len(runs)), [run.name for run in runs], rotation=20, ha="right")
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    ax.set_title("pass@k per run")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(paths: Sequence[Path], out_dir: Path, metrics: Sequence[str] | None = None) -> str:
    """Write ``comparison.md``, ``comparison.csv`` and ``comparison.png`` into ``out_dir``.

    Returns:
        The table for the terminal.
    """
    runs = load_runs(paths)
    keys = metric_keys(runs, metrics)
    if not keys:
        raise UserError("no pass@k metric in these runs: choose metrics with --metric KEY")
    rows = table_rows(runs, keys)
    out_dir.mkdir(parents=True, exist_ok=True)
    listing = "\n".join(f"- {run.name}: `{run.path}`" for run in runs)
    (out_dir / "comparison.md").write_text(f"# distill compare\n\n{markdown(rows)}\n\n{listing}\n")
    write_csv(out_dir / "comparison.csv", runs, keys)
    bar_chart(out_dir / "comparison.png", runs, keys)
    return plain(rows)


def main(argv: Sequence[str]) -> None:
    """`distill compare RUN_DIR... [--metric KEY]... [--out DIR]`."""
    parser = argparse.ArgumentParser(prog="distill compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run or multirun sweep directories")
    parser.add_argument(
        "--metric", action="append", help="metrics.json key to show (repeatable); default: pass@k"
    )
    parser.add_argument("--out", type=Path, help="output folder; default outputs/compare/<time>")
    args = parser.parse_args(list(argv))
    out = args.out or Path("outputs/compare") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    try:
        table = compare(args.runs, out, args.metric)
    except UserError as err:
        sys.stderr.write(f"distill compare: {err}\n")
        raise SystemExit(2) from None
    sys.stdout.write(f"{table}\n\nwritten: {out}/comparison.md, comparison.csv, comparison.png\n")


def _overrides(job: Path) -> list[str]:
    path = job / ".hydra" / "overrides.yaml"
    return [str(o) for o in yaml.safe_load(path.read_text()) or []] if path.is_file() else []


def _cell(value: Any, key: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    return f"{value:.1%}" if "pass@" in key else f"{value:g}"


def _float(value: Any) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if number else float("nan")


def _num(text: str) -> int:
    return int(text) if text.isdigit() else 0
