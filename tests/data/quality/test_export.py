"""Export to a Hugging Face `datasets` folder: splits, columns, the dataset card, drops."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest
from datasets import load_from_disk
from omegaconf import OmegaConf

from distill.config import DataConfig
from distill.data.quality.export import export_dataset, export_run
from distill.data.store import DatasetStore, is_validation

LANGS = ["python", "rust", "go", "java"]
KINDS = ["implement", "fix_bug", "algorithm"]


def record(i: int) -> dict:
    """A distinct, clean record; the code is unique so dedup keeps it."""
    lang, kind = LANGS[i % 4], KINDS[i % 3]
    code = f"def f_{i}(x):\n    y = x * {i * 7919} + {i}\n    return [y, '{'word' * (i % 5)}', {i}]"
    checks = {"has_code": True, "syntax": True, "compiles": True, "tests_run": i % 2}
    checks["tests_passed"] = i % 2
    if lang == "go":  # a toolchain that is missing: kept, counted
        checks.update(compiles=None, compile_detail="toolchain missing: go")
    return {
        "id": f"rec{i:04d}",
        "language": lang,
        "task_kind": kind,
        "difficulty": ["easy", "medium", "hard"][i % 3],
        "messages": [{"role": "user", "content": f"Write f_{i}."}],
        "response": f"```python\n{code}\n```",
        "code": code,
        "teacher": "claude-test",
        "usage": {"input_tokens": 100, "output_tokens": 40 + i % 3}
        | ({"cache_read_input_tokens": 80} if i % 2 else {}),
        "cost_usd": 0.001,
        "checks": checks,
        "created_at": "2026-01-01T00:00:00+00:00",
    }


@pytest.fixture
def records() -> list[dict]:
    out = [record(i) for i in range(60)]
    out.append({**record(0), "id": "dup0"})  # exact duplicate of rec0000
    out.append({**record(1), "id": "bad1", "checks": {"syntax": False, "has_code": True}})
    out.append({**record(2), "id": "fail2", "checks": {"tests_run": 1, "tests_passed": 0}})
    return out


def test_export_loads_back_with_splits_and_a_true_card(tmp_path, records):
    data = DataConfig(val_fraction=0.2)
    metrics = export_dataset(records, tmp_path / "hf", data)
    dd = load_from_disk(str(tmp_path / "hf"))
    assert set(dd) == {"train", "validation"}
    train_ids, val_ids = set(dd["train"]["id"]), set(dd["validation"]["id"])
    kept = {r["id"] for r in records[:60]}
    assert train_ids | val_ids == kept and not train_ids & val_ids
    assert val_ids == {i for i in kept if is_validation(i, 0.2)} and val_ids
    row = dd["train"][0]
    assert row["messages"][0]["role"] == "user" and row["checks"]["syntax"] is True
    assert set(row["usage"]) >= {"input_tokens", "output_tokens", "cache_read_input_tokens"}
    assert metrics == {
        "export/train": len(train_ids),
        "export/validation": len(val_ids),
        "export/dropped/exact_duplicate": 1,
        "export/dropped/syntax_error": 1,
        "export/dropped/tests_failed": 1,
    }

    card = (tmp_path / "hf" / "README.md").read_text()
    assert card.startswith("---\n") and "- text-generation" in card and "- rust" in card
    kept_records = [r for r in records if r["id"] in kept]
    for axis in ("language", "task_kind", "difficulty"):
        for value, n in Counter(r[axis] for r in kept_records).items():
            assert f"| {value} | {n} |" in card, (axis, value)
    assert f"| train | {len(train_ids)} |" in card
    assert f"| validation | {len(val_ids)} |" in card
    assert f"| input_tokens | {100 * len(records)} |" in card
    assert f"| cache_read_input_tokens | {80 * sum(int(r['id'][-1]) % 2 for r in records)}" in card
    assert "$0.0630 for all answers, $0.0600 for the kept ones" in card
    for reason in ("exact_duplicate", "syntax_error", "tests_failed"):
        assert f"| {reason} | 1 |" in card
    assert "| compile not run (toolchain missing) | 15 |" in card  # every go record but fail2
    assert "Anthropic's usage policies" in card
    assert "MBPP was skipped: no data.quality.mbpp_path" in card
    drops = json.loads((tmp_path / "hf" / "drops.json").read_text())
    assert drops == {
        "syntax_error": ["bad1"],
        "tests_failed": ["fail2"],
        "exact_duplicate": ["dup0"],
    }


def test_a_column_null_in_every_train_row_but_set_in_validation_exports(tmp_path):
    rows = [record(i) for i in range(20)]
    for r in rows:
        r["checks"]["tests_result"] = None  # e.g. no answer's tests ran in the train split
    val = next(r for r in rows if is_validation(r["id"], 0.2))
    val["checks"]["tests_result"] = "failed: AssertionError"
    val["checks"]["tests_passed"] = val["checks"]["tests_run"]  # kept by the filter
    export_dataset(rows, tmp_path / "hf", DataConfig(val_fraction=0.2))
    dd = load_from_disk(str(tmp_path / "hf"))
    results = {r["id"]: r["checks"]["tests_result"] for r in dd["validation"]}
    assert results[val["id"]] == "failed: AssertionError"
    assert set(dd["train"]["checks"][0]) >= {"tests_result"}


def test_export_run_writes_the_runs_dataset_and_says_when_nothing_is_left(
    tmp_path, records, caplog
):
    cfg = OmegaConf.create({"data": OmegaConf.structured(DataConfig(val_fraction=0.25))})
    store = DatasetStore(tmp_path / "data" / "dataset.jsonl")
    for rec in records:
        store.append(rec)
    metrics = export_run(cfg, tmp_path)
    assert metrics["export/train"] + metrics["export/validation"] == 60
    assert (
        len(load_from_disk(str(tmp_path / "data" / "hf"))["validation"])
        == metrics["export/validation"]
    )
    cfg.data.export = False
    assert export_run(cfg, tmp_path) == {}
    broken = [{**r, "checks": {"syntax": False}} for r in records[:3]]
    with caplog.at_level(logging.WARNING):
        metrics = export_dataset(broken, tmp_path / "none", DataConfig())
    assert "all 3 records were dropped" in caplog.text and "data.quality" in caplog.text
    assert metrics == {"export/train": 0, "export/validation": 0, "export/dropped/syntax_error": 3}
    assert "| syntax_error | 3 |" in (tmp_path / "none" / "README.md").read_text()
    assert not (tmp_path / "none" / "dataset_dict.json").exists()
