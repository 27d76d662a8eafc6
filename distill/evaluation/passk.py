"""Unbiased pass@k estimator (Chen et al. 2021, https://arxiv.org/abs/2107.03374)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of ``k`` samples drawn from ``n`` is correct.

    Computes ``1 - C(n - c, k) / C(n, k)`` in the numerically stable product form
    ``1 - prod(1 - k / arange(n - c + 1, n + 1))``.

    Args:
        n: Samples generated for the problem.
        c: Samples among them that passed, ``0 <= c <= n``.
        k: Sample budget, ``1 <= k <= n``.

    Returns:
        The estimate in ``[0, 1]``.

    Raises:
        ValueError: If the arguments are out of range.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n; got n={n}, c={c}, k={k}.")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(num_samples: Sequence[int], num_correct: Sequence[int], k: int) -> float:
    """Average :func:`pass_at_k` over problems.

    Args:
        num_samples: Samples per problem, shape ``(problems,)``.
        num_correct: Passing samples per problem, shape ``(problems,)``.
        k: Sample budget; must not exceed any problem's sample count.

    Returns:
        The mean estimate, or ``0.0`` when there are no problems.
    """
    if len(num_samples) != len(num_correct):
        raise ValueError(
            f"num_samples has {len(num_samples)} entries but num_correct has {len(num_correct)}."
        )
    if not num_samples:
        return 0.0
    return float(
        np.mean([pass_at_k(n, c, k) for n, c in zip(num_samples, num_correct, strict=True)])
    )
