"""Tables of scores: the pipeline's before/after table, one evaluation's summary, a W&B table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS = (
    ("eval/humaneval/pass@1", "HumanEval pass@1", "{:.1%}"),
    ("ce", "CE on held-out teacher answers (nats/token)", "{:.3f}"),
    ("top1_agreement", "top-1 agreement with teacher", "{:.1%}"),
)
# Rows of the W&B samples table; past this many, the table holds the first ones (logged).
WANDB_TABLE_ROWS = 1000
WANDB_COLUMNS = ("task_id", "sample", "code", "passed", "result", "reason", "strict_passed")


def comparison_table(rows: Mapping[str, Mapping[str, Any]], title: str = "model") -> str:
    """A Markdown table: one row per model, one column per score ("-" where a score is missing)."""
    header = [title] + [label for _, label, _ in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, scores in rows.items():
        cells = [name]
        for key, _, fmt in COLUMNS:
            value = scores.get(key)
            cells.append(fmt.format(value) if isinstance(value, int | float) else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(metrics: Mapping[str, Any], benchmark: str, ks: Sequence[int]) -> str:
    """One evaluation's scores: a row per mode, pass@k columns, then the outcome counts.

    Args:
        metrics: What :func:`distill.evaluation.scoring.score` returns.
        benchmark: The ``eval/<benchmark>/`` prefix to read.
        ks: The k values to show (a missing one shows "-").
    """
    prefix = f"eval/{benchmark}"
    header = ["mode", "problems", *(f"pass@{k}" for k in ks)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for mode, sub in (("compatible", ""), ("strict", "/strict")):
        cells = [mode, str(metrics.get(f"{prefix}{sub}/num_problems", "-"))]
        for k in ks:
            value = metrics.get(f"{prefix}{sub}/pass@{k}")
            cells.append(f"{value:.1%}" if isinstance(value, float) else "-")
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
