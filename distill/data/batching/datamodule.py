"""The LightningDataModule: records -> chat-templated token ids with prompt tokens masked out.

Every batch holds, besides `input_ids`, `attention_mask` and `labels` (B, T):
- `code_mask` (B, T) bool: True on answer tokens inside a fenced code block of the response
  (for code-only token weighting); aligned with `labels`, so a next-token loss takes [:, 1:].
- `group_tokens`: a 0-d long tensor, the scored tokens (labels[:, 1:] != -100) of the
  accumulation group of the batch (the micro-batches of one optimizer step, on this rank), from
  which the trainer sets the exact global-batch `loss_tokens`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from distill.data.batching.sampling import (
    Examples,
    GroupTokenBatches,
    LengthGroupedSampler,
    difficulty_levels,
)
from distill.data.store import DatasetError, is_validation, read_records

if TYPE_CHECKING:
    from distill.data.cache.logit_cache import LogitCache

log = logging.getLogger(__name__)
IGNORE_INDEX = -100  # PyTorch's and Hugging Face's label for "not scored"; the losses use the same
CURRICULA = ("none", "difficulty")
# A fence line: ``` or ~~~ (3 or more), any indentation (teachers indent fences in lists).
FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")


def code_spans(text: str) -> list[tuple[int, int]]:
    """Character ranges [start, end) of the contents of fenced code blocks in markdown `text`.

    The fence lines themselves are not part of a block; a block left open (a cut answer) runs to
    the end of the text. A closing fence uses the opening character, at least as many times.
    """
    spans, pos, fence, start = [], 0, None, 0
    for line in text.split("\n"):
        match = FENCE.match(line.rstrip("\r"))
        if fence is None:
            # A backtick fence's info string holds no backtick (else it is inline code).
            if match and not (match.group(1)[0] == "`" and "`" in match.group(2)):
                fence, start = match.group(1), min(pos + len(line) + 1, len(text))
        elif (
            match
            and match.group(1)[0] == fence[0]
            and len(match.group(1)) >= len(fence)
            and not match.group(2).strip()
        ):
            spans.append((start, pos))
            fence = None
        pos += len(line) + 1
    if fence is not None:
        spans.append((start, len(text)))
    return [(a, b) for a, b in spans if b > a]


def token_code_mask(offsets: Sequence[tuple[int, int]], spans: list[tuple[int, int]]) -> list[bool]:
    """True for each token whose (non-empty) character range lies wholly inside one span."""
    return [e > s and any(a <= s and e <= b for a, b in spans) for s, e in offsets]


def _answer_tokens(
    tokenizer: PreTrainedTokenizerBase, prompt: str, prompt_ids: list[int], full: str, response: str
) -> tuple[list[int], list[bool]]:
    """Token ids of the rendered assistant turn, and which of them are code of the response.

    The answer's ids are those the whole conversation continues the prompt's with, which is what
    the student generates after the prompt: a SentencePiece tokenizer (Llama) would otherwise
    read the answer as the start of a text and prefix its first word with a space. Where the
    tokenizer merges across the boundary, the answer is tokenized on its own.
    """
    fast = tokenizer.is_fast  # offsets need a fast tokenizer; the DataModule warns once
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=fast)
    n, answer = len(prompt_ids), full[len(prompt) :]
    if enc.input_ids[:n] == prompt_ids:  # offsets in `full`
        ids, offsets, shift = enc.input_ids[n:], (enc.get("offset_mapping") or [])[n:], len(prompt)
    else:  # offsets in `answer`
        enc, shift = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=fast), 0
        ids, offsets = enc.input_ids, enc.get("offset_mapping")
    if not fast:
        return ids, [False] * len(ids)
    base = answer.find(response)
    if base >= 0:  # spans of the response only: a template suffix is never code
        spans = [(a + base + shift, b + base + shift) for a, b in code_spans(response)]
    else:  # the template rewrote the response; its fences survive rendering
        spans = [(a + shift, b + shift) for a, b in code_spans(answer)]
    return ids, token_code_mask(offsets, spans)


def encode(
    record: dict[str, Any], tokenizer: PreTrainedTokenizerBase, max_length: int
) -> dict | None:
    """Token ids, labels and code mask for one record; answers are cut from the end, prompts never.

    Returns None when the prompt alone leaves no room for an answer token. The record's `id` and
    `difficulty` (None when absent) ride along.
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
    answer_ids, answer_code = _answer_tokens(
        tokenizer, prompt, prompt_ids, full, record["response"]
    )
    room = max_length - len(prompt_ids)
    if room < 1:
        return None
    answer_ids, answer_code = answer_ids[:room], answer_code[:room]
    return {
        "input_ids": prompt_ids + answer_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids,
        "code_mask": [False] * len(prompt_ids) + answer_code,
        "id": record["id"],
        "difficulty": record.get("difficulty"),
    }


def scored_tokens(example: dict) -> int:
    """Tokens a next-token loss scores in one example: labels[1:] != -100."""
    return sum(label != IGNORE_INDEX for label in example["labels"][1:])


def collate(
    examples: list[dict], pad_id: int, teacher_cache: LogitCache | None = None
) -> dict[str, Any]:
    """Right-pad a list of encoded examples into a batch.

    Args:
        examples: encoded examples (`encode`).
        pad_id: the tokenizer's padding id.
        teacher_cache: a sparse teacher logit cache whose targets join the batch, or None.

    Returns:
        `input_ids`, `attention_mask`, `labels` (B, T) long; `code_mask` (B, T) bool (False
        where an example has none); `group_tokens` 0-d long: the examples' `group_tokens` (set
        by the training sampler), else the batch's own scored-token count; with a cache,
        `teacher_sparse` (SparseTargets aligned with the positions).
    """
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    code = torch.zeros((len(examples), width), dtype=torch.bool)
    for row, e in enumerate(examples):
        n = len(e["input_ids"])
        ids[row, :n] = torch.tensor(e["input_ids"])
        labels[row, :n] = torch.tensor(e["labels"])
        mask[row, :n] = 1
        if "code_mask" in e:
            code[row, :n] = torch.tensor(e["code_mask"], dtype=torch.bool)
    group = examples[0].get("group_tokens")
    if group is None:
        group = int((labels[:, 1:] != IGNORE_INDEX).sum())
    batch = {
        "input_ids": ids,
        "attention_mask": mask,
        "labels": labels,
        "code_mask": code,
        "group_tokens": torch.tensor(group, dtype=torch.long),
    }
    if teacher_cache is not None:
        batch["teacher_sparse"] = teacher_cache.batch([e["id"] for e in examples], labels)
    return batch


class DistillDataModule(L.LightningDataModule):
    """Train/validation loaders over a dataset JSONL of teacher answers.

    Args:
        path: the dataset file.
        tokenizer: the student's tokenizer (chat template, pad token; a fast one for code_mask).
        max_length: tokens per example; longer answers are cut from the end.
        batch_size: examples per batch.
        val_fraction: share of records held out (by id hash).
        seed: shuffling seed.
        num_workers: DataLoader worker processes.
        curriculum: "none", or "difficulty": the first epoch goes easy -> medium -> hard (by each
            record's `difficulty`; unknown levels last, with a warning); later epochs shuffle.
        accumulate_grad_batches: micro-batches per optimizer step, for `group_tokens`.
        teacher_cache: a sparse teacher logit cache (`distill teacher-cache`) whose targets every
            batch carries as `teacher_sparse`, or None.
        quality: the `data` config (or its `quality` group): records are filtered as
            `distill generate` exports them (stored checks, dedup, decontamination) before
            training sees them; None trains on every record.
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
        curriculum: str = "none",
        accumulate_grad_batches: int = 1,
        teacher_cache: LogitCache | None = None,
        quality: Any = None,
    ) -> None:
        super().__init__()
        if curriculum not in CURRICULA:
            raise ValueError(f"data.curriculum={curriculum!r}: use one of {', '.join(CURRICULA)}")
        if accumulate_grad_batches < 1:  # a caller's bug: the train app derives it (batch_split)
            raise ValueError(f"accumulate_grad_batches={accumulate_grad_batches}: must be >= 1")
        self.path, self.tokenizer, self.max_length = Path(path), tokenizer, max_length
        self.batch_size, self.val_fraction, self.seed = batch_size, val_fraction, seed
        self.num_workers, self.curriculum = num_workers, curriculum
        self.accumulate_grad_batches = accumulate_grad_batches
        self.teacher_cache, self.quality = teacher_cache, quality
        self.train_set: list[dict] = []
        self.val_set: list[dict] = []
        self.train_levels: list[int] | None = None
        # Batches of the current epoch a resumed run already trained on (set from its checkpoint).
        self.resume_batches = 0

    def setup(self, stage: str | None = None) -> None:
        if self.train_set:
            return
        if not self.path.exists():
            raise DatasetError(
                f"dataset {self.path} does not exist: pass data.dataset=<a dataset.jsonl from "
                "`distill generate`>, or run `distill pipeline`, which generates it first"
            )
        if not self.tokenizer.is_fast:
            log.warning("the tokenizer is not a fast one (no token offsets): code_mask stays False")
        records = list(read_records(self.path))
        if self.quality is not None:
            records = self.filtered(records)
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
        if self.curriculum == "difficulty":
            self.train_levels = difficulty_levels([e["difficulty"] for e in self.train_set])
        log.info(
            "dataset: %d train, %d validation examples", len(self.train_set), len(self.val_set)
        )

    def filtered(self, records: list[dict]) -> list[dict]:
        """The records that pass the dataset's quality filter (as `distill generate` exports)."""
        from distill.data.quality.checks import filter_dataset, relax_quality

        kept, drops, _ = filter_dataset(records, self.quality)
        if not kept:
            raise DatasetError(
                f"{self.path}: all {len(records)} records were dropped by the quality filter "
                f"({drops}); check the teacher's answers, or relax data.quality "
                f"({', '.join(relax_quality(drops))})"
            )
        return kept

    def train_dataloader(self) -> DataLoader:
        lengths = [len(e["input_ids"]) for e in self.train_set]
        sampler = LengthGroupedSampler(
            lengths, self.batch_size, self.seed, levels=self.train_levels
        )
        scored = [scored_tokens(e) for e in self.train_set]
        trainer = self.trainer  # set by Lightning: the data-parallel rank takes its share
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        batches = GroupTokenBatches(sampler, scored, self.accumulate_grad_batches, rank, world)
        if self.resume_batches < len(batches):  # a mid-epoch resume: skip what was trained on
            batches.skip_batches(self.resume_batches)
        self.resume_batches = 0
        return DataLoader(
            Examples(self.train_set),
            batch_sampler=batches,
            collate_fn=partial(
                collate, pad_id=self.tokenizer.pad_token_id, teacher_cache=self.teacher_cache
            ),
            num_workers=self.num_workers,
            # Its own generator: starting an epoch must not draw from torch's global RNG (LoRA
            # dropout's), so that a resumed run draws the same dropout masks as an unbroken one.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def val_dataloader(self) -> DataLoader:
        """Batches by length; each batch's `group_tokens` is its own scored-token count."""
        ordered = sorted(self.val_set, key=lambda e: len(e["input_ids"]))
        return DataLoader(
            Examples(ordered),
            batch_size=self.batch_size,
            collate_fn=partial(
                collate, pad_id=self.tokenizer.pad_token_id, teacher_cache=self.teacher_cache
            ),
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(self.seed),  # see train_dataloader
        )
