"""Generation with a real local teacher: every answer stored, nothing asked twice."""

from __future__ import annotations

from distill.data.generation.generate import generate_dataset
from distill.data.instructions.templates import (
    sample_instructions,
)
from distill.data.store import DatasetStore, read_records
from distill.teachers.hf import HFTeacher
from distill.testing import tiny_llama
from tests.data.conftest import RECORD_FIELDS
from tests.data.instructions.test_templates import MIXTURE


def test_generate_dataset_stores_every_answer_and_never_asks_twice(tmp_path, tokenizer):
    instructions = sample_instructions(6, **MIXTURE, seed=0)
    loads = []

    def load():
        loads.append(1)
        return tiny_llama(4, seed=1), tokenizer

    path = tmp_path / "data.jsonl"
    teacher = HFTeacher(load, "tiny", max_new_tokens=8, batch_size=4)
    summary = generate_dataset(teacher, instructions, DatasetStore(path), system_prompt="Be brief.")
    assert summary["generate/answered"] == 6 and summary["generate/already_stored"] == 0
    assert summary["generate/records"] == 6 and len(loads) == 1
    records = list(read_records(path))
    assert len(records) == 6 and len({r["id"] for r in records}) == 6
    for rec in records:
        assert set(rec) == RECORD_FIELDS
        assert rec["teacher"] == "tiny" and rec["cost_usd"] == 0.0
        assert rec["messages"][0] == {"role": "system", "content": "Be brief."}
        assert 0 < rec["usage"]["output_tokens"] <= 8 and rec["usage"]["input_tokens"] > 0
        assert {"has_code", "syntax", "compiles", "tests_run", "tests_passed"} <= set(rec["checks"])
    asked = {(r["task_kind"], r["difficulty"], r["messages"][1]["content"]) for r in records}
    assert asked == {(i.task_kind, i.difficulty, i.prompt) for i in instructions}

    again = HFTeacher(load, "tiny", max_new_tokens=8, batch_size=4)
    summary = generate_dataset(again, instructions, DatasetStore(path), system_prompt="Be brief.")
    assert summary["generate/answered"] == 0 and summary["generate/already_stored"] == 6
    assert len(loads) == 1  # nothing to ask, so no weights loaded
    assert len(list(read_records(path))) == 6
