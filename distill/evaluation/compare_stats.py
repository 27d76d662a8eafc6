"""What `distill compare` says about noise: seeds pooled per arm, and a paired test per run.

* Jobs of a sweep that differ only in ``seed`` are one arm: its scores are the mean over seeds
  (with the spread), its per-problem scores the mean over seeds per problem.
* Each row's pass@k is tested against the best row's on the problems both scored (the per-problem
  verdicts come from the results file each run's ``metrics.json`` names), with the paired
  sign-flip permutation test of :mod:`distill.evaluation.intervals`.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distill.evaluation.intervals import paired_permutation_test
from distill.evaluation.passk import pass_at_k

SEED = "seed"
SIGNIFICANT = 0.05


def per_problem(path: Path, metrics: dict[str, Any], key: str) -> dict[str, float] | None:
    """Per-problem pass@k behind ``key`` (``eval/<b>/[base/|plus/]pass@k``) of the run in
    ``path``; None when its results file is not there (or strict mode: not paired)."""
    bench, rest = key.split("/")[1], key.split("/", 2)[2]
    part, _, k = rest.rpartition("pass@")
    part = part.rstrip("/")
    name = metrics.get(f"eval/{bench}/results_file")
    if part == "strict" or not isinstance(name, str):
        return None
    file = Path(path) / "eval" / name
    if not file.is_file():
        return None
    field = f"{part}_passed" if part else "passed"
    verdicts: dict[str, list[bool]] = {}
    for line in file.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            verdicts.setdefault(row["task_id"], []).append(bool(row.get(field)))
    return {t: pass_at_k(len(v), sum(v), int(k)) for t, v in verdicts.items() if len(v) >= int(k)}


def pool_seeds(named: Sequence[tuple[str, dict[str, str], dict[str, Any], Any]]) -> list[tuple]:
    """Merge runs whose parameters differ only in ``seed``.

    Args:
        named: ``(name, params, metrics, per_problem)`` per run; ``per_problem`` maps a metric key
            to its per-problem scores (or None).

    Returns:
        The same tuples, one per arm: numeric metrics averaged, ``<key>/sd`` (the spread over
        seeds) and ``seeds`` added, per-problem scores averaged over the seeds that have them.
    """
    arms: dict[tuple, list[tuple]] = {}
    for item in named:
        params = item[1]
        if SEED not in params:
            arms[("run", item[0])] = [item]
            continue
        rest = tuple(sorted((k, v) for k, v in params.items() if k != SEED))
        arms.setdefault(("arm", rest), []).append(item)
    pooled = []
    for (kind, rest), items in arms.items():
        if kind == "run" or len(items) == 1:
            pooled += items
            continue
        params = dict(rest)
        name = ",".join(f"{k}={v}" for k, v in rest) or "all seeds"
        metrics: dict[str, Any] = {"seeds": len(items)}
        keys = {k for _, _, m, _ in items for k, v in m.items() if _number(v)}
        for key in sorted(keys):
            values = [m[key] for _, _, m, _ in items if _number(m.get(key))]
            metrics[key] = statistics.fmean(values)
            metrics[f"{key}/sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        scores: dict[str, dict[str, float]] = {}
        for key in {k for _, _, _, p in items for k in (p or {})}:
            runs = [p[key] for _, _, _, p in items if p and p.get(key) is not None]
            common = set.intersection(*(set(r) for r in runs)) if runs else set()
            scores[key] = {t: statistics.fmean(r[t] for r in runs) for t in common}
        pooled.append((f"{name} ({len(items)} seeds)", params, metrics, scores))
    return pooled


def paired_cells(scores: Sequence[dict[str, float] | None], best: int = 0) -> list[str]:
    """One cell per run: its paired p against run ``best`` (``"best"`` for that one), marked
    ``n.s.`` when not significant; "-" where per-problem scores are missing."""
    reference = scores[best] if scores else None
    cells = []
    for i, own in enumerate(scores):
        if i == best:
            cells.append("best")
            continue
        if own is None or reference is None:
            cells.append("-")
            continue
        common = sorted(set(own) & set(reference))
        if not common:
            cells.append("-")
            continue
        p = paired_permutation_test([own[t] for t in common], [reference[t] for t in common])
        cells.append(f"p={p:.2g}" + ("" if p < SIGNIFICANT else " (n.s.)"))
    return cells


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
