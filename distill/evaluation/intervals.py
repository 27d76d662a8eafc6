"""How sure a score is: bootstrap intervals over problems and a paired test between two models.

Both resample *problems*, the unit a benchmark draws: with 164 problems one problem is 0.6
points of pass@1, so two models that differ by less than their intervals are not told apart.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 10_000


def bootstrap_interval(
    per_problem: Sequence[float], level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean over problems.

    Args:
        per_problem: One score per problem (its pass@k estimate, or a mean over seeds),
            shape ``(problems,)``.
        level: Coverage of the interval.
        resamples: Bootstrap resamples of the problems (with replacement).
        seed: Seed of the resampling, so a table is reproducible.

    Returns:
        ``(low, high)``; ``(nan, nan)`` without problems.
    """
    scores = np.asarray(per_problem, dtype=float)
    if scores.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, scores.size, size=(resamples, scores.size))
    means = scores[draws].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)


def paired_permutation_test(
    a: Sequence[float], b: Sequence[float], resamples: int = RESAMPLES, seed: int = 0
) -> float:
    """Two-sided p-value that two models score the same on the same problems.

    The sign-flip permutation test on the per-problem differences ``a - b``: under the null each
    difference is as likely negative as positive. Exact (all sign patterns) when at most 16
    problems differ, else Monte Carlo with ``resamples`` draws (plus-one corrected).

    Args:
        a: Per-problem scores of one model, shape ``(problems,)``.
        b: The other model's on the same problems, in the same order.
    """
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same problems: {len(a)} vs {len(b)} scores")
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    diff = diff[diff != 0]
    if diff.size == 0:
        return 1.0
    observed = abs(diff.sum())
    if diff.size <= 16:
        signs = (np.arange(2**diff.size)[:, None] >> np.arange(diff.size)) & 1
        sums = np.abs(((2 * signs - 1) * diff).sum(axis=1))
        return float(np.mean(sums >= observed - 1e-12))
    rng = np.random.default_rng(seed)
    signs = rng.choice([-1.0, 1.0], size=(resamples, diff.size))
    hits = np.sum(np.abs((signs * diff).sum(axis=1)) >= observed - 1e-12)
    return float((hits + 1) / (resamples + 1))
