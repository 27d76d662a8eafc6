"""`distill compare RUN_DIR...`: several runs' metrics side by side.

Each RUN_DIR holds a `metrics.json`, or is a Hydra multirun sweep directory whose job folders do;
a sweep expands to its jobs, each named by the overrides that differ between them. Writes a
Markdown table and a CSV sorted by the chosen metric (best first): pass@k with its 95% interval,
each run tested against the best on the same problems, seeds of a sweep pooled per arm
(:mod:`distill.evaluation.compare_stats`); and a PNG: each metric
against each swept parameter, or, when nothing was swept, the runs side by side (pass@k of each
benchmark as grouped bars); and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from distill.errors import UserError
from distill.evaluation.compare_stats import paired_cells, per_problem, pool_seeds

METRICS_FILE = "metrics.json"
PASS_AT_K = re.compile(r"^eval/[^/]+/(strict/|base/|plus/)?pass@\d+$")
# Metrics where lower is better (a loss, a divergence); every other metric sorts high first.
LOWER_IS_BETTER = re.compile(r"(^|/)(kl|ce|nll|ppl|perplexity|loss\w*|\w*_loss)$")
ORDERS = ("auto", "asc", "desc", "none")


@dataclass(frozen=True)
class Run:
    """One run to compare: its display name, folder and metrics.json."""

    name: str
    path: Path
    metrics: dict[str, Any]
    params: dict[str, str] = field(default_factory=dict)  # the swept overrides, key -> value
    per_problem: dict[str, dict[str, float] | None] = field(default_factory=dict)  # by key


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
    loaded, paths = [], {}
    for name, path in named:
        params = dict(o.split("=", 1) for o in name.split(",") if "=" in o)
        if names.count(name) > 1:  # two sweeps with the same grid, or two runs called alike
            name = f"{path.parent.name}/{name}"
        metrics = json.loads((path / METRICS_FILE).read_text())
        scores = {k: per_problem(path, metrics, k) for k in metrics if PASS_AT_K.match(k)}
        loaded.append((name, params, metrics, scores))
        paths[name] = path
    return [
        Run(name, paths.get(name, _common_parent(paths.values())), metrics, params, scores)
        for name, params, metrics, scores in pool_seeds(loaded)
    ]


def sort_runs(runs: Sequence[Run], key: str, order: str = "auto") -> list[Run]:
    """``runs`` best first by ``key`` (runs without it last). ``order``: "auto" (ascending for
    losses and divergences, see :data:`LOWER_IS_BETTER`, else descending), "asc", "desc", or
    "none" (as given)."""
    if order not in ORDERS:
        raise UserError(f"--order {order}: use one of {', '.join(ORDERS)}")
    if order == "none":
        return list(runs)
    ascending = order == "asc" or (order == "auto" and bool(LOWER_IS_BETTER.search(key)))
    sign = 1.0 if ascending else -1.0

    def rank(run: Run) -> tuple[bool, float]:
        value = _float(run.metrics.get(key))
        return (value != value, 0.0 if value != value else sign * value)  # NaN: missing, last

    return sorted(runs, key=rank)


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
    """Header and one row per run; pass@k as percentages with the 95% interval over problems
    (or the spread over seeds), "-" if missing; then, for a pass@k first metric, each run's
    paired test against the best run on the problems both scored."""
    have = [run.per_problem.get(keys[0]) is not None for run in runs] if keys else []
    paired = sum(have) >= 2  # per-problem verdicts of two runs at least
    rows = [["run", *keys, *([f"vs best, paired ({_short(keys[0])})"] if paired else [])]]
    tests = paired_cells([run.per_problem.get(keys[0]) for run in runs]) if paired else []
    for i, run in enumerate(runs):
        cells = [_cell(run.metrics.get(key), key, run.metrics) for key in keys]
        rows.append([run.name, *cells, *tests[i : i + 1]])
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


@dataclass(frozen=True)
class Panel:
    """One subplot: each series' values at the x categories (bars), or at numeric x (a line)."""

    xlabel: str
    ylabel: str
    xs: list[str]
    series: dict[str, list[float]]  # label -> one value per x; NaN where a run lacks the metric
    numeric: bool = False


def panels(runs: Sequence[Run], keys: Sequence[str]) -> list[Panel]:
    """What :func:`plot` draws. Nothing swept: the runs side by side, one panel per benchmark
    with its pass@k (compatible and strict) as grouped bars, and one panel per other metric.
    Swept: each metric against each swept parameter. pass@k in %."""
    params = list(dict.fromkeys(p for run in runs for p in run.params))
    if not params:
        names = [run.name for run in runs]
        groups: dict[str, list[str]] = {}
        for key in keys:
            bench = key.split("/")[1] if PASS_AT_K.match(key) else None
            groups.setdefault(f"eval/{bench} pass@k (%)" if bench else key, []).append(key)
        return [
            Panel("run", ylabel, names, {_short(k): _values(runs, k) for k in members})
            for ylabel, members in groups.items()
        ]
    out = []
    for key in keys:
        for param in params:
            chosen = [r for r in runs if param in r.params]
            xs = [r.params[param] for r in chosen]
            numeric = all(_is_number(x) for x in xs)
            if numeric:
                order = sorted(range(len(xs)), key=lambda i: float(xs[i]))
                chosen, xs = [chosen[i] for i in order], [xs[i] for i in order]
            ylabel = f"{key} (%)" if "pass@" in key else key
            out.append(Panel(param, ylabel, xs, {key: _values(chosen, key)}, numeric))
    return out


def plot(path: Path, runs: Sequence[Run], keys: Sequence[str]) -> None:
    """Draw :func:`panels` one above the other into a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    todo = panels(runs, keys)
    width = max(5.0, 0.9 * max(len(p.xs) * max(1, len(p.series) / 2) for p in todo))
    fig, axes = plt.subplots(len(todo), 1, squeeze=False, figsize=(width, 3.2 * len(todo)))
    for ax, panel in zip(axes[:, 0], todo, strict=True):
        if panel.numeric:
            for label, ys in panel.series.items():
                ax.plot([float(x) for x in panel.xs], ys, "o-", label=label)
        else:
            step = 0.8 / len(panel.series)
            for i, (label, ys) in enumerate(panel.series.items()):
                at = [x + (i - (len(panel.series) - 1) / 2) * step for x in range(len(panel.xs))]
                bars = ax.bar(at, [0.0 if y != y else y for y in ys], step, label=label)
                ax.bar_label(bars, labels=[f"{y:.3g}" if y == y else "-" for y in ys], fontsize=7)
            ax.set_xticks(range(len(panel.xs)), panel.xs, rotation=25, ha="right", fontsize=8)
        if len(panel.series) > 1:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(
    paths: Sequence[Path],
    out_dir: Path,
    metrics: Sequence[str] | None = None,
    sort: str | None = None,
    order: str = "auto",
) -> str:
    """Write ``comparison.md``, ``comparison.csv`` and ``comparison.png`` into ``out_dir``.

    Args:
        sort: the metric the rows are sorted by (best first); None: the first metric shown.
        order: see :func:`sort_runs`.

    Returns:
        The table for the terminal.
    """
    runs = load_runs(paths)
    keys = metric_keys(runs, metrics)
    if not keys:
        raise UserError("no pass@k metric in these runs: choose metrics with --metric KEY")
    runs = sort_runs(runs, sort or keys[0], order)
    rows = table_rows(runs, keys)
    out_dir.mkdir(parents=True, exist_ok=True)
    listing = "\n".join(f"- {run.name}: `{run.path}`" for run in runs)
    (out_dir / "comparison.md").write_text(f"# distill compare\n\n{markdown(rows)}\n\n{listing}\n")
    write_csv(out_dir / "comparison.csv", runs, keys)
    plot(out_dir / "comparison.png", runs, keys)
    return plain(rows)


def main(argv: Sequence[str]) -> None:
    """`distill compare RUN_DIR... [--metric KEY]... [--out DIR]`."""
    parser = argparse.ArgumentParser(prog="distill compare", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run or multirun sweep directories")
    parser.add_argument(
        "--metric", action="append", help="metrics.json key to show (repeatable); default: pass@k"
    )
    parser.add_argument("--sort", help="metric to sort by, best first; default: the first shown")
    parser.add_argument(
        "--order", default="auto", choices=ORDERS,
        help="auto: ascending for losses and divergences (kl, ce, loss...), else descending",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help="output folder; default outputs/compare/<time>")
    args = parser.parse_args(list(argv))
    out = args.out or Path("outputs/compare") / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    try:
        table = compare(args.runs, out, args.metric, args.sort, args.order)
    except UserError as err:
        sys.stderr.write(f"distill compare: {err}\n")
        raise SystemExit(2) from None
    sys.stdout.write(f"{table}\n\nwritten: {out}/comparison.md, comparison.csv, comparison.png\n")


def _overrides(job: Path) -> list[str]:
    path = job / ".hydra" / "overrides.yaml"
    return [str(o) for o in yaml.safe_load(path.read_text()) or []] if path.is_file() else []


def _cell(value: Any, key: str, metrics: dict[str, Any] | None = None) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else str(value)
    if "pass@" not in key:
        return f"{value:g}"
    metrics = metrics or {}
    low, high, sd = (metrics.get(f"{key}/{s}") for s in ("ci95_low", "ci95_high", "sd"))
    if sd is not None:
        return f"{value:.1%} ±{100 * sd:.1f}"
    if isinstance(low, float) and isinstance(high, float):
        return f"{value:.1%} [{100 * low:.1f}, {100 * high:.1f}]"
    return f"{value:.1%}"


def _common_parent(paths: Any) -> Path:
    """A pooled arm's folder: the sweep its seeds ran in."""
    parents = {Path(p).parent for p in paths}
    return parents.pop() if len(parents) == 1 else Path(".")


def _values(runs: Sequence[Run], key: str) -> list[float]:
    scale = 100.0 if "pass@" in key else 1.0
    return [scale * _float(run.metrics.get(key)) for run in runs]


def _short(key: str) -> str:
    """``eval/humaneval/strict/pass@1`` -> ``strict/pass@1``."""
    return key.split("/", 2)[2] if PASS_AT_K.match(key) else key


def _float(value: Any) -> float:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if number else float("nan")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _num(text: str) -> int:
    return int(text) if text.isdigit() else 0
