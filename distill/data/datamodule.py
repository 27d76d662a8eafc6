"""The LightningDataModule: records -> chat-templated token ids with prompt tokens masked out."""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler
from transformers import PreTrainedTokenizerBase

from distill.data.store import DatasetError, read_records

log = logging.getLogger(__name__)
IGNORE_INDEX = -100  # PyTorch's and Hugging Face's label for "not scored"; the losses use the same


def is_validation(record_id: str, val_fraction: float) -> bool:
    """A stable split by id hash: a record stays on its side when the dataset grows."""
    bucket = int(hashlib.sha256(record_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < val_fraction


def encode(
    record: dict[str, Any], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> dict | None:
    """Token ids and labels for one record; answers are cut from the end, prompts never.

    Returns None when the prompt alone leaves no room for an answer token.
    """
    messages = record["messages"]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    full = tokenizer.apply_chat_template(
        messages + [{"role": "assistant", "content": record["response"]}], tokenize=False
    )
    if not full.startswith(prompt):
        raise DatasetError(
            f"record {record['id']}: the chat template does not render the prompt as a prefix of "
            "the full conversation, so prompt tokens cannot be masked; use a tokenizer whose "
            "template appends the assistant turn"
        )
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    answer_ids = tokenizer(full[len(prompt) :], add_special_tokens=False).input_ids
    room = max_length - len(prompt_ids)
    if room < 1:
        return None
    answer_ids = answer_ids[:room]
    return {
        "input_ids": prompt_ids + answer_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
        "id": record["id"],
    }


def collate(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of encoded examples into a batch."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class LengthGroupedSampler(Sampler[list[int]]):
    """Shuffled batches of similar lengths, so little compute goes to padding.

    Args:
        lengths: token count of each example.
        batch_size: examples per batch.
        seed: base seed; the order changes every epoch.
        group: batches sorted together in one pool.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int = 0, group: int = 8) -> None:
        self.lengths, self.batch_size, self.seed, self.group = lengths, batch_size, seed, group
        self.epoch = 0

    def __iter__(self) -> Iterator[list[int]]:
        rng = random.Random(self.seed + self.epoch)
        self.epoch += 1
        order = list(range(len(self.lengths)))
        rng.shuffle(order)
        pool = self.batch_size * self.group
        batches = []
        for start in range(0, len(order), pool):
            chunk = sorted(order[start : start + pool], key=lambda i: self.lengths[i])
            batches += [
                chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)
            ]
        rng.shuffle(batches)
        return iter(batches)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)


class DistillDataModule(L.LightningDataModule):
    """Train/validation loaders over a dataset JSONL of teacher answers.

    Args:
        path: the dataset file.
        tokenizer: the student's tokenizer (chat template, pad token).
        max_length: tokens per example; longer answers are cut from the end.
        batch_size: examples per batch.
        val_fraction: share of records held out (by id hash).
        seed: shuffling seed.
    """

    def __init__(
        self,
        path: Path,
        tokenizer: PreTrainedTokenizerBase,
        max_length: int = 512,
        batch_size: int = 4,
        val_fraction: float = 0.15,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.path, self.tokenizer, self.max_length = Path(path), tokenizer, max_length
        self.batch_size, self.val_fraction, self.seed = batch_size, val_fraction, seed
        self.num_workers = num_workers
        self.train_set: list[dict] = []
        self.val_set: list[dict] = []

    def setup(self, stage: str | None = None) -> None:
        if self.train_set:
            return
        if not self.path.exists():
            raise DatasetError(
                f"dataset {self.path} does not exist: pass data.dataset=<a dataset.jsonl from "
                "`distill generate`>, or run `distill pipeline`, which generates it first"
            )
        records = list(read_records(self.path))
        encoded = [encode(r, self.tokenizer, self.max_length) for r in records]
        dropped = sum(e is None for e in encoded)
        if dropped:
            log.warning(
                "%d of %d records dropped: prompt alone fills data.max_length=%d",
                dropped,
                len(records),
                self.max_length,
            )
        kept = [e for e in encoded if e is not None]
        self.val_set = [e for e in kept if is_validation(e["id"], self.val_fraction)]
        self.train_set = [e for e in kept if not is_validation(e["id"], self.val_fraction)]
        if not self.train_set or not self.val_set:
            raise DatasetError(
                f"{self.path}: {len(records)} records ({dropped} dropped: prompt alone fills "
                f"data.max_length={self.max_length}) give {len(self.train_set)} for training and "
                f"{len(self.val_set)} for validation; raise data.max_length, generate more "
                "(data.num_examples) or change data.val_fraction"
            )
        log.info(
            "dataset: %d train, %d validation examples", len(self.train_set), len(self.val_set)
        )

    def _collate(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        return collate(examples, self.tokenizer.pad_token_id)

    def train_dataloader(self) -> DataLoader:
        sampler = LengthGroupedSampler(
            [len(e["input_ids"]) for e in self.train_set], self.batch_size, self.seed
        )
        return DataLoader(
            self.train_set,
            batch_sampler=sampler,
            collate_fn=self._collate,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        ordered = sorted(self.val_set, key=lambda e: len(e["input_ids"]))
        return DataLoader(
            ordered,
            batch_size=self.batch_size,
            collate_fn=self._collate,
            num_workers=self.num_workers,
        )
