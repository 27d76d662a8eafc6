"""Tables of scores: the pipeline's before/after table, one evaluation's summary, a W&B table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from distill.evaluation.benchmarks import BENCHMARKS, get_benchmark
from distill.evaluation.intervals import paired_permutation_test

# Scores beside the benchmark's pass@1: (metrics key, column title, format).
HELDOUT_COLUMNS = (
    ("ce", "CE on held-out teacher answers (nats/token)", "{:.3f}"),
    ("top1_agreement", "top-1 agreement with teacher", "{:.1%}"),
)
# Rows of the W&B samples table; past this many, the table holds the first ones (logged).
WANDB_TABLE_ROWS = 1000
WANDB_COLUMNS = ("task_id", "sample", "code", "passed", "result", "reason", "strict_passed")


def comparison_table(
    rows: Mapping[str, Mapping[str, Any]], benchmark: str = "humaneval", title: str = "model"
) -> str:
    """A Markdown table: one row per model, its pass@1 on `benchmark` with the 95% interval over
    problems, then the held-out scores ("-" where a score is missing)."""
    bench = benchmark_title(benchmark)
    header = [title, f"{bench} pass@1 [95% CI]"] + [label for _, label, _ in HELDOUT_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, scores in rows.items():
        cells = [name, pass_cell(scores, f"eval/{benchmark}/pass@1")]
        for key, _, fmt in HELDOUT_COLUMNS:
            value = scores.get(key)
            cells.append(fmt.format(value) if isinstance(value, int | float) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def benchmark_title(benchmark: str) -> str:
    """How tables name ``benchmark`` (its own name when it is not registered)."""
    return get_benchmark(benchmark).title if benchmark in BENCHMARKS.names() else benchmark


def pass_cell(scores: Mapping[str, Any], key: str) -> str:
    """``"45.0% [25.0, 65.0]"``: a pass@k and its interval, in percent; "-" when missing."""
    value = scores.get(key)
    if not isinstance(value, int | float):
        return "-"
    low, high = scores.get(f"{key}/ci95_low"), scores.get(f"{key}/ci95_high")
    if isinstance(low, float) and isinstance(high, float):
        return f"{value:.1%} [{100 * low:.1f}, {100 * high:.1f}]"
    return f"{value:.1%}"


def paired_comparison(
    after: Mapping[str, float], before: Mapping[str, float], names: tuple[str, str]
) -> dict[str, float | int | str]:
    """Two models on the problems both were scored on: the change in pass@1, the problems
    gained and lost, and the paired permutation test's p-value, with a sentence saying so.

    Args:
        after: Per-problem pass@1 of the model compared, by task id.
        before: The same for the reference model.
        names: How the sentence names ``(after, before)``.
    """
    tasks = sorted(set(after) & set(before))
    a, b = [after[t] for t in tasks], [before[t] for t in tasks]
    delta = (sum(a) - sum(b)) / max(len(tasks), 1)
    p = paired_permutation_test(a, b)
    gained = sum(x > y for x, y in zip(a, b, strict=True))
    lost = sum(x < y for x, y in zip(a, b, strict=True))
    text = (
        f"{names[0]} vs {names[1]}: {100 * delta:+.1f} points of pass@1 on {len(tasks)} problems "
        f"({gained} gained, {lost} lost); paired permutation test p = {p:.3g}"
        + (" (no difference at the 5% level)" if p >= 0.05 else "")
    )
    return {"delta": delta, "gained": gained, "lost": lost, "p_value": p, "text": text}


def summary_table(metrics: Mapping[str, Any], benchmark: str, ks: Sequence[int]) -> str:
    """One evaluation's scores: a row per mode, pass@k columns, then the outcome counts.

    Args:
        metrics: What :func:`distill.evaluation.scoring.score` returns.
        benchmark: The ``eval/<benchmark>/`` prefix to read.
        ks: The k values to show (a missing one shows "-").
    """
    prefix = f"eval/{benchmark}"
    header = ["mode", "problems", *(f"pass@{k} [95% CI]" for k in ks)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    parts = get_benchmark(benchmark).parts if benchmark in BENCHMARKS.names() else ()
    problems = metrics.get(f"{prefix}/num_problems", "-")
    modes = [("compatible", "", problems), *((f"{p} tests", f"/{p}", problems) for p in parts)]
    modes.append(("strict", "/strict", metrics.get(f"{prefix}/strict/num_problems", "-")))
    for mode, sub, count in modes:
        cells = [mode, str(count), *(pass_cell(metrics, f"{prefix}{sub}/pass@{k}") for k in ks)]
        lines.append("| " + " | ".join(cells) + " |")
    outcomes = {
        key.rsplit("/", 1)[1]: value
        for key, value in metrics.items()
        if key.startswith(f"{prefix}/outcome/")
    }
    counts = ", ".join(f"{name} {n}" for name, n in sorted(outcomes.items()) if n)
    lines.append("")
    lines.append(f"{metrics.get(f'{prefix}/num_samples', 0)} samples: {counts or 'none'}")
    lines.append(f"sandbox isolation: {metrics.get(f'{prefix}/isolation', 'unknown')}")
    return "\n".join(lines)


def wandb_samples_table(results: Sequence[Mapping[str, Any]]) -> Any:
    """A ``wandb.Table`` of the first :data:`WANDB_TABLE_ROWS` samples with their outcome."""
    import wandb

    table = wandb.Table(columns=list(WANDB_COLUMNS))
    for row in results[:WANDB_TABLE_ROWS]:
        code = row.get("completion", row.get("solution", ""))
        table.add_data(
            row["task_id"],
            row.get("sample", 0),
            code,
            row["passed"],
            row["result"],
            row.get("reason"),
            row.get("strict_passed"),
        )
    return table
