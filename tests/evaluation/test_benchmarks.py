import pytest

from distill.evaluation.benchmarks import load_humaneval, load_problems


def test_load_humaneval_all_in_task_order() -> None:
    problems = load_humaneval()
    assert len(problems) == 164
    assert [p.task_id for p in problems] == [f"HumanEval/{i}" for i in range(164)]
    assert all(p.prompt.endswith("\n") for p in problems)


def test_limit_keeps_first_problems() -> None:
    assert [p.task_id for p in load_problems("humaneval", 3)] == [
        "HumanEval/0",
        "HumanEval/1",
        "HumanEval/2",
    ]


@pytest.mark.parametrize("limit", [0, -1])
def test_bad_limit_rejected(limit: int) -> None:
    with pytest.raises(ValueError, match="eval.limit"):
        load_humaneval(limit)


def test_unknown_benchmark_names_allowed_values() -> None:
    with pytest.raises(ValueError, match="allowed: humaneval"):
        load_problems("mbpp")
