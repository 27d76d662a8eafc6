"""DataModule features: the code-only token mask, per-accumulation-group token counts, and the
difficulty curriculum."""

from __future__ import annotations

import json
import logging
import pickle

import pytest

from distill.config import DataConfig, QualityConfig
from distill.data.batching.datamodule import (
    CURRICULA,
    DatasetError,
    DistillDataModule,
    LengthGroupedSampler,
    code_spans,
    collate,
    encode,
    scored_tokens,
)

PROSE_AND_CODE = "Here it is:\n```python\ndef f():\n    return 1\n```\nIt returns one.\n"


def record(i: int, response: str, difficulty: str | None = None) -> dict:
    rec = {"id": f"r{i:03d}", "messages": [{"role": "user", "content": f"Task {i}."}]}
    rec["response"] = response
    if difficulty is not None:
        rec["difficulty"] = difficulty
    return rec


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def code_text(tokenizer, example: dict) -> str:
    ids = [t for t, c in zip(example["input_ids"], example["code_mask"], strict=True) if c]
    return tokenizer.decode(ids)


# --- code mask ---------------------------------------------------------------------------------


def test_code_spans_cover_block_contents_only():
    text = "a\n```py\nx = 1\n```\nb ```inline``` c\n~~~\ny\n~~~\n  ```\nz\n"
    got = [text[a:b] for a, b in code_spans(text)]
    # The tilde block, then an unclosed indented fence (a cut answer) that runs to the end.
    assert got == ["x = 1\n", "y\n", "z\n"]
    assert code_spans("no code here") == []
    assert code_spans("```\n```") == []  # an empty block
    # A closing fence needs at least as many fence characters, and nothing after them.
    assert [text[a:b] for text in ["````\na\n```\nb\n````\n"] for a, b in code_spans(text)] == [
        "a\n```\nb\n"
    ]


def test_encode_marks_only_the_code_of_the_response(tokenizer):
    e = encode(record(0, PROSE_AND_CODE), tokenizer, max_length=512)
    assert len(e["code_mask"]) == len(e["input_ids"])
    assert code_text(tokenizer, e) == "def f():\n    return 1\n"
    n_prompt = e["labels"].count(-100)
    assert not any(e["code_mask"][:n_prompt])  # the prompt is never code
    assert not e["code_mask"][-1]  # nor the template's end-of-turn suffix
    untagged = encode(record(1, "Say:\n```\nprint(2)\n```"), tokenizer, max_length=512)
    assert code_text(tokenizer, untagged) == "print(2)\n"
    assert not any(encode(record(2, "no fences"), tokenizer, 512)["code_mask"])


def test_code_mask_is_cut_with_the_answer(tokenizer):
    full = encode(record(0, PROSE_AND_CODE), tokenizer, max_length=512)
    n_prompt = full["labels"].count(-100)
    cut = len("Here it is:\n```python\ndef")
    short = encode(record(0, PROSE_AND_CODE), tokenizer, max_length=n_prompt + cut)
    assert short["code_mask"] == full["code_mask"][: n_prompt + cut]
    assert code_text(tokenizer, short) == "def"


def test_collate_pads_the_code_mask_with_false(tokenizer):
    examples = [encode(record(i, r), tokenizer, 512) for i, r in enumerate(["x", PROSE_AND_CODE])]
    batch = collate(examples, tokenizer.pad_token_id)
    assert batch["code_mask"].dtype.is_floating_point is False
    assert batch["code_mask"].shape == batch["input_ids"].shape
    assert not batch["code_mask"][0].any()  # prose row and its padding
    assert batch["code_mask"][1].sum() == len("def f():\n    return 1\n")
    # Examples without a mask (hand-made ones) get an all-False row.
    plain = collate([{"input_ids": [7, 8], "labels": [-100, 8]}], pad_id=3)
    assert plain["code_mask"].tolist() == [[False, False]]


# --- group_tokens --------------------------------------------------------------------------------


@pytest.fixture
def dataset(tmp_path):
    """46 records whose answers differ in length, so the counts of the groups differ."""
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [record(i, "y" * (3 + (7 * i) % 29)) for i in range(46)])
    return path


def own_count(batch) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())


@pytest.mark.parametrize("accumulate", [1, 3])
def test_group_tokens_sum_each_accumulation_group(dataset, tokenizer, accumulate):
    dm = DistillDataModule(
        dataset, tokenizer, batch_size=3, val_fraction=0.2, accumulate_grad_batches=accumulate
    )
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert len(batches) == len(dm.train_dataloader()) == -(-len(dm.train_set) // 3)
    assert len(batches) % 3 != 0  # so the last group of 3 is a short one
    groups = [batches[i : i + accumulate] for i in range(0, len(batches), accumulate)]
    assert len(groups[-1]) == (len(batches) % accumulate or accumulate)
    for group in groups:
        expected = sum(own_count(b) for b in group)
        for b in group:
            assert b["group_tokens"].dim() == 0 and b["group_tokens"].dtype.is_signed
            assert int(b["group_tokens"]) == expected
    counts = {int(b["group_tokens"]) for b in batches}
    if accumulate == 1:
        assert all(int(b["group_tokens"]) == own_count(b) for b in batches)
    else:
        assert len(counts) > 1 and all(int(b["group_tokens"]) > own_count(b) for b in batches)
    assert sum(int(g[0]["group_tokens"]) for g in groups) == sum(
        scored_tokens(e) for e in dm.train_set
    )


def test_validation_batches_count_their_own_tokens(dataset, tokenizer):
    dm = DistillDataModule(
        dataset, tokenizer, batch_size=2, val_fraction=0.3, accumulate_grad_batches=4
    )
    dm.setup("fit")
    batches = list(dm.val_dataloader())
    assert len(batches) > 1
    assert all(int(b["group_tokens"]) == own_count(b) for b in batches)


def test_train_loader_pickles_and_runs_in_a_worker(dataset, tokenizer):
    kwargs = {"batch_size": 3, "val_fraction": 0.2, "accumulate_grad_batches": 2}
    dm = DistillDataModule(dataset, tokenizer, **kwargs)
    dm.setup("fit")
    loader = dm.train_dataloader()
    for part in (loader.dataset, loader.batch_sampler, loader.collate_fn):
        pickle.loads(pickle.dumps(part))
    in_worker = DistillDataModule(dataset, tokenizer, num_workers=1, **kwargs)
    in_worker.setup("fit")
    for a, b in zip(loader, in_worker.train_dataloader(), strict=True):
        assert a.keys() == b.keys()
        assert all(a[k].equal(b[k]) for k in a)


# --- difficulty curriculum -----------------------------------------------------------------------


def flat_levels(batches, levels) -> list[int]:
    return [levels[i] for b in batches for i in b]


def test_sampler_curriculum_orders_the_first_epoch_only():
    levels = [i % 4 for i in range(50)]  # 0 easy .. 3 unknown
    lengths = [(i * 13) % 47 for i in range(50)]
    sampler = LengthGroupedSampler(lengths, batch_size=4, seed=3, group=2, levels=levels)
    first, second = list(sampler), list(sampler)
    for batches in (first, second):
        assert len(batches) == len(sampler) == 13
        assert sorted(i for b in batches for i in b) == list(range(50))
    assert flat_levels(first, levels) == sorted(flat_levels(first, levels))
    assert flat_levels(second, levels) != sorted(flat_levels(second, levels))
    # Length-grouped within a level: batches are cut from pools sorted by (level, length).
    for b in first:
        assert [(levels[i], lengths[i]) for i in b] == sorted((levels[i], lengths[i]) for i in b)
    # The same seed gives the same curriculum; set_epoch (Lightning, on resume) skips it.
    again = LengthGroupedSampler(lengths, batch_size=4, seed=3, group=2, levels=levels)
    assert list(again) == first
    again.set_epoch(1)
    assert list(again) == second


def test_sampler_curriculum_shuffles_within_a_level():
    levels = [0] * 40 + [1] * 40
    lengths = [5] * 80  # equal lengths: only the shuffle orders them
    batches = list(LengthGroupedSampler(lengths, batch_size=4, seed=0, levels=levels))
    easy = [i for b in batches[:10] for i in b]
    assert sorted(easy) == list(range(40)) and easy != list(range(40))


def test_datamodule_curriculum_goes_easy_to_hard_then_shuffles(tmp_path, tokenizer, caplog):
    names = ["hard", "easy", "medium", "expert", None]
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [record(i, "z" * (2 + i % 9), names[i % 5]) for i in range(60)])
    dm = DistillDataModule(path, tokenizer, batch_size=4, val_fraction=0.2, curriculum="difficulty")
    with caplog.at_level(logging.WARNING, logger="distill.data.batching.datamodule"):
        dm.setup("fit")
    assert "difficulty levels None, expert are not among easy, medium, hard" in caplog.text
    by_id = {e["id"]: e["difficulty"] for e in dm.train_set}
    rank = {"easy": 0, "medium": 1, "hard": 2}
    loader = dm.train_dataloader()
    first = [rank.get(by_id[i], 3) for i in ids_in_order(loader, dm)]
    assert first == sorted(first) and first[0] == 0 and first[-1] == 3
    second = [rank.get(by_id[i], 3) for i in ids_in_order(loader, dm)]
    assert sorted(second) == sorted(first) and second != sorted(second)


def ids_in_order(loader, dm) -> list[str]:
    """Record ids of one epoch, read from the batch sampler (the batches drop the ids)."""
    return [dm.train_set[i]["id"] for batch in loader.batch_sampler for i, _ in batch]


def test_curriculum_none_keeps_no_levels(dataset, tokenizer):
    dm = DistillDataModule(dataset, tokenizer, val_fraction=0.2)
    dm.setup("fit")
    assert dm.train_levels is None
    assert "difficulty" in dm.train_set[0] and dm.train_set[0]["difficulty"] is None


def test_curriculum_and_accumulation_are_checked(tmp_path, tokenizer):
    with pytest.raises(ValueError, match=r"data.curriculum='hardest': use one of none, difficulty"):
        DistillDataModule(tmp_path / "x.jsonl", tokenizer, curriculum="hardest")
    with pytest.raises(ValueError, match=r"accumulate_grad_batches=0: must be >= 1"):
        DistillDataModule(tmp_path / "x.jsonl", tokenizer, accumulate_grad_batches=0)
    for name in CURRICULA:  # the config schema accepts exactly what the DataModule knows
        assert DataConfig(curriculum=name).curriculum == name
    with pytest.raises(ValueError, match=r"data.curriculum='easy_first': use none or difficulty"):
        DataConfig(curriculum="easy_first")


# --- quality filter ----------------------------------------------------------------------------


def test_training_sees_only_what_the_quality_filter_keeps(tmp_path, tokenizer, caplog):
    good = [record(i, f"```python\ndef f{i}(x):\n    return x * {i}\n```") for i in range(12)]
    for r in good:
        r.update(code=r["response"].split("\n", 1)[1].rsplit("```", 1)[0], checks={"syntax": True})
    broken = record(90, "```python\ndef f(:\n```")
    broken.update(code="def f(:", checks={"syntax": False})
    duplicate = {**good[3], "id": "r091"}
    no_checks = record(92, "```python\nprint(92)\n```")  # from elsewhere: kept, code in response
    path = tmp_path / "d.jsonl"
    write_jsonl(path, [*good, broken, duplicate, no_checks])
    quality = QualityConfig(decontaminate=False)
    dm = DistillDataModule(path, tokenizer, val_fraction=0.2, quality=quality)
    with caplog.at_level(logging.INFO):
        dm.setup("fit")
    ids = {e["id"] for e in dm.train_set + dm.val_set}
    assert ids == {r["id"] for r in good} | {"r092"}
    assert "syntax_error" in caplog.text and "exact_dup" in caplog.text
    unfiltered = DistillDataModule(path, tokenizer, val_fraction=0.2)
    unfiltered.setup("fit")
    assert len(unfiltered.train_set + unfiltered.val_set) == 15


def test_a_dataset_the_filter_empties_names_the_knob(tmp_path, tokenizer):
    rows = [{**record(i, "no code"), "code": "", "checks": {}} for i in range(4)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    dm = DistillDataModule(tmp_path / "d.jsonl", tokenizer, quality=DataConfig())
    with pytest.raises(DatasetError, match="data.quality.drop_no_code=false"):
        dm.setup("fit")
