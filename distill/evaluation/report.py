"""Comparison tables of several models' scores, for the terminal and as Markdown."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

COLUMNS = (
    ("eval/humaneval/pass@1", "HumanEval pass@1", "{:.1%}"),
    ("ce", "CE on held-out teacher answers (nats/token)", "{:.3f}"),
    ("top1_agreement", "top-1 agreement with teacher", "{:.1%}"),
)


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
