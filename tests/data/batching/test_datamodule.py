"""Encoding and batching: prompt masking, cutting, collation, length-grouped sampling, splits."""

from __future__ import annotations

import pytest

from distill.data.batching.datamodule import (
    DistillDataModule,
    LengthGroupedSampler,
    collate,
    encode,
)
from distill.data.store import DatasetError, is_validation
from tests.data.conftest import record, write_jsonl


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
