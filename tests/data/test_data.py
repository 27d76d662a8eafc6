"""Templates and quotas, quality checks, the JSONL store, encoding and batching, generation."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from distill.data.datamodule import (
    DistillDataModule,
    LengthGroupedSampler,
    collate,
    encode,
    is_validation,
)
from distill.data.generation import generate_dataset
from distill.data.quality import extract_code, python_syntax_ok
from distill.data.store import DatasetError, DatasetStore, read_records, record_id
from distill.data.template_specs import TOPICS
from distill.data.templates import (
    PYTHON_SPECS,
    Instruction,
    check_mixture,
    quotas,
    sample_instructions,
)
from distill.teachers.hf import HFTeacher
from distill.testing import tiny_llama, tiny_tokenizer

RECORD_FIELDS = {
    "id",
    "language",
    "task_kind",
    "difficulty",
    "messages",
    "response",
    "code",
    "teacher",
    "usage",
    "cost_usd",
    "checks",
    "created_at",
}


@pytest.fixture(scope="module")
def tokenizer():
    return tiny_tokenizer()


def record(i: int, response: str = "def f():\n    return 1", prompt: str = "Write f.") -> dict:
    return {
        "id": f"r{i:03d}",
        "messages": [{"role": "user", "content": f"{prompt} ({i})"}],
        "response": response,
    }


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


# --- templates --------------------------------------------------------------------------------


def test_quotas_are_exact_and_use_the_largest_remainder():
    assert quotas({"a": 0.5, "b": 0.3, "c": 0.2}, 7) == {"a": 4, "b": 2, "c": 1}  # 3.5 2.1 1.4
    assert quotas({"a": 1, "b": 1, "c": 1}, 0) == {"a": 0, "b": 0, "c": 0}
    weights = {"x": 3.0, "y": 1.0, "z": 0.7, "w": 0.0}
    for total in range(0, 60):
        counts = quotas(weights, total)
        assert sum(counts.values()) == total
        assert counts["w"] == 0
        for k, w in weights.items():  # never more than one away from the exact share
            assert abs(counts[k] - total * w / sum(weights.values())) < 1


MIXTURE = {
    "languages": {"python": 1.0},
    "task_kinds": {"implement": 2.0, "complete": 1.0},
    "difficulties": {"easy": 1.0, "medium": 1.0, "hard": 1.0},
}


def test_sample_instructions_hits_every_cell_count():
    out = sample_instructions(30, **MIXTURE, seed=0)
    assert len(out) == 30 and all(isinstance(i, Instruction) for i in out)
    cells = Counter((i.language, i.task_kind, i.difficulty) for i in out)
    # weights 2:2:2:1:1:1 of 30 -> 6.67 x3 and 3.33 x3; the kinds must total 20 and 10 and each
    # difficulty 10, so the largest remainders go to two implement cells and one complete cell
    assert cells == {
        ("python", "implement", "easy"): 7,
        ("python", "implement", "medium"): 7,
        ("python", "implement", "hard"): 6,
        ("python", "complete", "easy"): 3,
        ("python", "complete", "medium"): 3,
        ("python", "complete", "hard"): 4,
    }
    assert len({i.prompt for i in out}) == 30  # distinct within a cell, and across kinds
    hard = {s[1] for s in PYTHON_SPECS if s[0] == "hard"}
    for ins in out:
        if ins.difficulty == "hard" and ins.task_kind == "implement":
            assert any(signature in ins.prompt for signature in hard)


def test_sample_instructions_is_deterministic_for_a_seed():
    first = sample_instructions(20, **MIXTURE, seed=3)
    assert sample_instructions(20, **MIXTURE, seed=3) == first
    assert sample_instructions(20, **MIXTURE, seed=4) != first


def test_asking_more_than_a_cell_holds_names_num_examples():
    hard = sum(s[0] == "hard" for s in PYTHON_SPECS) * (len(TOPICS) + 1)  # specs x topic seeds
    one_cell = {"languages": {"python": 1}, "task_kinds": {"implement": 1}}
    assert len(sample_instructions(hard, **one_cell, difficulties={"hard": 1})) == hard
    with pytest.raises(
        ValueError, match=rf"asks for {hard + 1} .* only {hard} distinct .*data\.num_examples"
    ):
        sample_instructions(hard + 1, **one_cell, difficulties={"hard": 1})


def test_check_mixture_names_unknown_axis_values():
    problems = check_mixture(
        {"python": 1, "cobol": 1}, {"implement": 1, "haiku": 1}, {"easy": 1, "hard": 1}
    )
    assert problems == [
        "data.languages: no templates for ['cobol']; available: python, javascript, java, cpp, "
        "go, rust",
        "data.task_kinds: no templates for ['haiku']; available: implement, complete, fix_bug, "
        "write_tests, refactor, optimise, data_structure, algorithm, explain_then_code",
    ]
    assert check_mixture(*MIXTURE.values()) == []


# --- quality ----------------------------------------------------------------------------------


def test_extract_code_prefers_the_python_block():
    text = "Run it:\n```bash\nls -l\n```\nThen:\n```python\ndef f():\n    return 1\n```\nDone."
    assert extract_code(text) == "def f():\n    return 1"
    assert extract_code("```py\nx = 1\n```") == "x = 1"
    assert extract_code("```\nx = 2\n```") == "x = 2"  # untagged: the first block


def test_extract_code_without_a_closing_fence_or_without_a_block():
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n") == "def f():\n    return 1"
    assert extract_code("def f(): return 1") == ""
    assert extract_code("") == ""


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("def f(x):\n    return x + 1", True),
        ("import os\nprint(os.sep)", True),
        ("def f(x)\n    return x", False),
        ("return (", False),
        ("   \n", False),
        ("x = '\\x00'", True),
        ("\x00", False),
    ],
)
def test_python_syntax_ok(code, ok):
    assert python_syntax_ok(code) is ok


# --- store ------------------------------------------------------------------------------------


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


# --- encoding and batching --------------------------------------------------------------------


def test_encode_masks_exactly_the_prompt(tokenizer):
    rec = record(0, response="def add(a, b):\n    return a + b")
    prompt = tokenizer.apply_chat_template(
        rec["messages"], add_generation_prompt=True, tokenize=False
    )
    n_prompt = len(tokenizer(prompt, add_special_tokens=False).input_ids)
    e = encode(rec, tokenizer, max_length=512)
    assert e["labels"][:n_prompt] == [-100] * n_prompt
    assert -100 not in e["labels"][n_prompt:]
    assert e["labels"][n_prompt:] == e["input_ids"][n_prompt:]
    assert tokenizer.decode(e["input_ids"][:n_prompt]) == prompt
    assert tokenizer.decode(e["labels"][n_prompt:]) == rec["response"] + "<|im_end|>\n"


def test_encode_cuts_the_answer_never_the_prompt(tokenizer):
    rec = record(0, response="x" * 100)
    full = encode(rec, tokenizer, max_length=10_000)
    n_prompt = full["labels"].count(-100)
    short = encode(rec, tokenizer, max_length=n_prompt + 5)
    assert short["input_ids"] == full["input_ids"][: n_prompt + 5]
    assert short["labels"].count(-100) == n_prompt
    assert tokenizer.decode(short["labels"][n_prompt:]) == "xxxxx"
    assert len(encode(rec, tokenizer, max_length=n_prompt + 1)["input_ids"]) == n_prompt + 1
    assert encode(rec, tokenizer, max_length=n_prompt) is None
    assert encode(rec, tokenizer, max_length=3) is None


def test_collate_pads_right():
    batch = collate(
        [{"input_ids": [7, 8, 9], "labels": [-100, 8, 9]}, {"input_ids": [5], "labels": [5]}],
        pad_id=3,
    )
    assert batch["input_ids"].tolist() == [[7, 8, 9], [5, 3, 3]]
    assert batch["labels"].tolist() == [[-100, 8, 9], [5, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_length_grouped_sampler_covers_every_index_once_per_epoch():
    lengths = [(i * 37) % 101 for i in range(101)]
    sampler = LengthGroupedSampler(lengths, batch_size=4, seed=0, group=3)
    orders = []
    for _ in range(2):
        batches = list(sampler)
        assert len(batches) == len(sampler) == 26
        assert all(1 <= len(b) <= 4 for b in batches)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(101))
        orders.append(flat)
    assert orders[0] != orders[1]  # reshuffled every epoch


def test_length_grouped_sampler_batches_similar_lengths():
    lengths = [(i * 7) % 32 for i in range(32)]  # a permutation of 0..31
    batches = list(LengthGroupedSampler(lengths, batch_size=4, seed=1, group=8))  # one pool
    assert sorted(len(b) for b in batches) == [4] * 8
    for b in batches:  # four consecutive lengths per batch
        assert max(lengths[i] for i in b) - min(lengths[i] for i in b) == 3


def test_datamodule_split_is_stable_by_id(tmp_path, tokenizer):
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [record(i) for i in range(40)])
    dm = DistillDataModule(path, tokenizer, max_length=128, batch_size=4, val_fraction=0.25)
    dm.setup("fit")
    val = {e["id"] for e in dm.val_set}
    assert val and dm.train_set
    assert val == {f"r{i:03d}" for i in range(40) if is_validation(f"r{i:03d}", 0.25)}
    assert len(val) + len(dm.train_set) == 40
    write_jsonl(path, [record(i) for i in range(80)])  # the dataset grows
    grown = DistillDataModule(path, tokenizer, max_length=128, batch_size=4, val_fraction=0.25)
    grown.setup("fit")
    assert {e["id"] for e in grown.val_set if int(e["id"][1:]) < 40} == val
    batch = next(iter(grown.train_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels", "code_mask", "group_tokens"}
    assert batch["input_ids"].shape[0] <= 4


def test_datamodule_errors_say_what_to_do(tmp_path, tokenizer):
    missing = DistillDataModule(tmp_path / "none.jsonl", tokenizer)
    with pytest.raises(DatasetError, match=r"does not exist: pass data.dataset="):
        missing.setup("fit")
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [record(i) for i in range(10)])
    too_short = DistillDataModule(path, tokenizer, max_length=8)
    with pytest.raises(DatasetError) as err:
        too_short.setup("fit")
    message = str(err.value)
    assert "10 records (10 dropped" in message and "raise data.max_length" in message


# --- generation with a real local teacher -----------------------------------------------------


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
