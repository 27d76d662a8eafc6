"""The JSONL dataset store: atomic appends, one record per id, torn lines, stable ids."""

from __future__ import annotations

import json

import pytest

from distill.data.store import DatasetError, DatasetStore, read_records, record_id
from tests.data.conftest import record, write_jsonl


def test_store_keeps_ids_across_reopen(tmp_path):
    path = tmp_path / "sub" / "data.jsonl"
    store = DatasetStore(path)
    for i in range(3):
        store.append(record(i))
    reopened = DatasetStore(path)
    assert len(reopened) == 3 and all(f"r{i:03d}" in reopened for i in range(3))
    assert "r999" not in reopened
    assert [r["id"] for r in reopened.records()] == ["r000", "r001", "r002"]


def test_store_writes_a_duplicate_id_once(tmp_path):
    path = tmp_path / "data.jsonl"
    store = DatasetStore(path)
    store.append(record(1))
    store.append(dict(record(1), response="another answer"))
    DatasetStore(path).append(record(1))
    assert path.read_text().count("\n") == 1
    assert DatasetStore(path).records()[0]["response"] == record(1)["response"]


def test_store_sets_a_torn_last_line_aside(tmp_path):
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [record(0), record(1)])
    with open(path, "a") as f:
        f.write('{"id": "r002", "messages": [{"ro')  # an append cut by a crash
    store = DatasetStore(path)
    assert len(store) == 2 and "r002" not in store
    assert (tmp_path / "data.jsonl.torn").read_text() == '{"id": "r002", "messages": [{"ro\n'
    store.append(record(2))
    assert [r["id"] for r in read_records(path)] == ["r000", "r001", "r002"]


def test_store_names_file_and_line_of_invalid_json(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(record(0)) + "\n{not json}\n" + json.dumps(record(2)) + "\n")
    with pytest.raises(DatasetError, match=rf"{path}:2: not valid JSON"):
        DatasetStore(path)
    path.write_text(json.dumps(record(0)) + "\n" + json.dumps({"id": "x"}) + "\n")
    with pytest.raises(DatasetError, match=rf"{path}:2: record lacks messages, response"):
        list(read_records(path))


def test_record_id_is_stable_and_depends_on_teacher_and_settings():
    messages = [{"role": "user", "content": "hi"}]
    settings = {"temperature": 0.0, "max_tokens": 10}
    rid = record_id(messages, "claude-x", settings)
    # Pinned: a changed id scheme would make every resumed run pay for its answers again.
    assert rid == "a49a724da9bec53b5c14dc2f"
    assert record_id(messages, "claude-x", {"max_tokens": 10, "temperature": 0.0}) == rid
    assert record_id(messages, "claude-y", settings) != rid
    assert record_id(messages, "claude-x", {**settings, "temperature": 0.7}) != rid
    assert record_id([{"role": "user", "content": "hi!"}], "claude-x", settings) != rid
