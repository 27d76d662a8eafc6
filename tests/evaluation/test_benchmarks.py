import json
from pathlib import Path

import pytest

from distill.errors import UserError
from distill.evaluation.benchmarks import (
    entry_point,
    load_humaneval,
    load_problems,
    mbpp_records,
)

MBPP_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "mbpp"
needs_mbpp = pytest.mark.skipif(not MBPP_DIR.is_dir(), reason=f"no MBPP copy at {MBPP_DIR}")


def test_load_humaneval_all_in_task_order() -> None:
    problems = load_humaneval()
    assert len(problems) == 164
    assert [p.task_id for p in problems] == [f"HumanEval/{i}" for i in range(164)]
    assert all(p.prompt.endswith("\n") for p in problems)
    assert {p.benchmark for p in problems} == {"humaneval"}
    assert {p.test_setup for p in problems} == {""}


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
    with pytest.raises(ValueError, match="eval.limit"):
        load_problems("mbpp", limit, MBPP_DIR)


def test_unknown_benchmark_names_the_registered_ones() -> None:
    with pytest.raises(UserError, match=r"'mbpp_sanitised'.*closest: 'mbpp_sanitized'.*humaneval"):
        load_problems("mbpp_sanitised")


@needs_mbpp
def test_mbpp_full_test_split() -> None:
    problems = load_problems("mbpp", data_path=MBPP_DIR)
    assert [p.task_id for p in problems] == [f"Mbpp/{i}" for i in range(11, 511)]
    first = problems[0]
    raw = json.loads((MBPP_DIR / "mbpp.jsonl").read_text().splitlines()[10])
    assert raw["task_id"] == 11
    assert first.prompt == raw["text"]
    assert first.test == "\n".join(raw["test_list"])
    assert first.test.splitlines() == raw["test_list"]
    assert first.entry_point == "remove_Occ"
    assert first.canonical_solution == raw["code"].replace("\r\n", "\n")
    assert (first.benchmark, first.test_setup) == ("mbpp", "")
    # Task 367 is the one test problem with setup code; it uses the solution's Node class.
    (tree,) = [p for p in problems if p.test_setup]
    assert tree.task_id == "Mbpp/367" and tree.test_setup.startswith("root = Node(1)")
    assert "\r" not in tree.test_setup and tree.entry_point == "is_tree_balanced"


@needs_mbpp
def test_mbpp_sanitized_test_split() -> None:
    problems = load_problems("mbpp_sanitized", data_path=str(MBPP_DIR))
    assert len(problems) == 257
    ids = [int(p.task_id.split("/")[1]) for p in problems]
    assert ids == sorted(ids) and ids[0] >= 11 and ids[-1] <= 510
    with_imports = [p for p in problems if p.test_setup]
    assert len(with_imports) == 13 and {p.test_setup for p in with_imports} == {"import math"}
    by_id = {p.task_id: p for p in problems}
    raw = {r["task_id"]: r for r in json.loads((MBPP_DIR / "sanitized-mbpp.json").read_text())}
    assert by_id["Mbpp/11"].prompt == raw[11]["prompt"]
    assert load_problems("mbpp_sanitized", 2, MBPP_DIR) == problems[:2]


@needs_mbpp
def test_mbpp_records_hold_every_split() -> None:
    assert sorted(mbpp_records("mbpp", MBPP_DIR)) == list(range(1, 975))
    assert len(mbpp_records("mbpp_sanitized", MBPP_DIR)) == 427


def test_mbpp_missing_file_names_the_override(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"eval.data_path=.*no mbpp.jsonl"):
        load_problems("mbpp", data_path=tmp_path)


def test_entry_point_is_the_called_function_the_code_defines() -> None:
    code = "import math\ndef helper(x):\n    return x\ndef area(r):\n    return helper(r)\n"
    assert entry_point(code, ["assert math.isclose(area(1), 3.14)"]) == "area"
    assert entry_point("def f(x): return x", ["assert sorted(f([2, 1])) == [1, 2]"]) == "f"
    # No definition (e.g. unparsable code): the first non-builtin call.
    assert entry_point("def f(:", ["assert len(g(1)) == 1"]) == "g"
    with pytest.raises(ValueError, match="no function call"):
        entry_point("x = 1", ["assert x == 1"])


@needs_mbpp
def test_every_mbpp_record_has_an_entry_point_it_defines() -> None:
    for benchmark in ("mbpp", "mbpp_sanitized"):
        for p in load_problems(benchmark, data_path=MBPP_DIR):
            assert f"def {p.entry_point}" in p.canonical_solution, p.task_id


def test_hub_unreachable_fails_fast_naming_the_override(monkeypatch) -> None:
    import socket

    def refuse(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(ValueError, match=r"unreachable.*eval.data_path=<folder"):
        load_problems("mbpp")


@pytest.mark.network
def test_mbpp_from_the_hub_matches_the_local_copy() -> None:
    hub = load_problems("mbpp_sanitized")
    assert hub == load_problems("mbpp_sanitized", data_path=MBPP_DIR)
