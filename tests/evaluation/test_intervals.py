"""Bootstrap intervals over problems and the paired test, against closed-form references."""

from __future__ import annotations

import math

import pytest

from distill.evaluation.intervals import bootstrap_interval, paired_permutation_test


def binomial_two_sided(n: int, successes: int) -> float:
    """The exact two-sided sign test: P(|S - n/2| >= |s - n/2|) for S ~ Binomial(n, 1/2)."""
    extreme = abs(successes - n / 2)
    return sum(math.comb(n, k) for k in range(n + 1) if abs(k - n / 2) >= extreme) / 2**n


def test_bootstrap_interval_of_a_constant_is_that_constant():
    assert bootstrap_interval([0.25] * 30) == (0.25, 0.25)


def test_bootstrap_interval_matches_the_normal_approximation():
    low, high = bootstrap_interval([0.0] * 50 + [1.0] * 50)
    half = 1.96 * math.sqrt(0.25 / 100)  # 0.098
    assert low == pytest.approx(0.5 - half, abs=0.015)
    assert high == pytest.approx(0.5 + half, abs=0.015)


def test_bootstrap_interval_is_reproducible_and_narrows_with_more_problems():
    few = bootstrap_interval([0, 1] * 10)
    assert few == bootstrap_interval([0, 1] * 10)
    many = bootstrap_interval([0, 1] * 100)
    assert many[1] - many[0] < (few[1] - few[0]) / 2


@pytest.mark.parametrize("better,worse", [(5, 0), (7, 2), (4, 4)])
def test_paired_test_is_the_exact_sign_test_for_pass_fail_outcomes(better, worse):
    # per problem: 1 where only `a` passes, -1 where only `b` passes, ties count for nothing
    a = [1] * better + [0] * worse + [1, 0, 1]
    b = [0] * better + [1] * worse + [1, 0, 1]
    expected = binomial_two_sided(better + worse, better)
    assert paired_permutation_test(a, b) == pytest.approx(expected)
    assert paired_permutation_test(b, a) == pytest.approx(expected)


def test_paired_test_monte_carlo_agrees_with_the_exact_test_beyond_16_differences():
    a, b = [1] * 15 + [0] * 5, [0] * 15 + [1] * 5
    assert paired_permutation_test(a, b) == pytest.approx(binomial_two_sided(20, 15), abs=0.006)


def test_paired_test_of_identical_scores_finds_nothing_and_unequal_lengths_are_refused():
    assert paired_permutation_test([0.5, 1, 0], [0.5, 1, 0]) == 1.0
    with pytest.raises(ValueError, match="same problems"):
        paired_permutation_test([1, 0], [1])
