"""A local Hugging Face causal LM as a teacher: batched greedy generation, and white-box outputs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING, DictConfig

from distill.config import DTYPES, Checks, TeacherConfig
from distill.teachers.base import CAPABILITIES, Answer, Journal, Request, register_teacher

if TYPE_CHECKING:  # torch and transformers load with the model, not with the registry
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)
QUANTIZATIONS = ("nf4", "fp4", "int8")


@dataclass
class HFTeacherConfig(TeacherConfig):
    """A local Hugging Face causal LM: text, and logits, hidden states and attention maps.

    `path` is a local folder, a Hugging Face hub id, `embedded:<name>` (the offline default) or
    `tiny:<role>` (a tiny random model for tests).
    """

    kind: str = "hf"
    name: str = "${.path}"
    path: str = MISSING
    batch_size: int = 8
    dtype: str = "float32"
    # 4-bit (nf4, fp4) or 8-bit (int8) through bitsandbytes: a 34B teacher beside the 7B student
    # on one 80 GB GPU. null: `dtype` as stored.
    quantization: str | None = None
    # How the teacher renders the prompts it answers (generate): as `student.prompt_format`.
    prompt_format: str | None = None

    def __post_init__(self) -> None:
        check = Checks()
        check.require(self.max_new_tokens > 0, "teacher.max_new_tokens must be > 0")
        check.require(self.batch_size > 0, "teacher.batch_size must be > 0")
        check.require(self.dtype in DTYPES, f"teacher.dtype={self.dtype!r}: use one of {DTYPES}")
        check.require(
            self.quantization is None or self.quantization in QUANTIZATIONS,
            f"teacher.quantization={self.quantization!r}: use one of {QUANTIZATIONS} or null",
        )
        check.require(bool(self.path), "teacher.path is empty: set teacher.path=<folder or hub id>")
        check.done()


@register_teacher("hf")
class HFTeacher:
    """Answers chat prompts with greedy decoding, longest prompts batched together.

    Args:
        load: returns (model in eval mode, tokenizer with a chat template and a pad token); called
            on the first `answer`, so a run with nothing left to ask loads no weights.
        name: recorded as the `teacher` of each record.
        max_new_tokens: per answer.
        batch_size: prompts generated together.
    """

    Config = HFTeacherConfig
    capabilities = frozenset(CAPABILITIES)

    def __init__(
        self,
        load: Callable[[], tuple[PreTrainedModel, PreTrainedTokenizerBase]],
        name: str,
        max_new_tokens: int = 384,
        batch_size: int = 8,
    ) -> None:
        self._load, self.name = load, name
        self.model: PreTrainedModel | None = None
        self.tokenizer: PreTrainedTokenizerBase | None = None
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    @classmethod
    def problems(cls, cfg: DictConfig) -> Iterable[str]:
        return ()  # the model's files are checked with the student's (distill.checks)

    @classmethod
    def from_config(cls, cfg: DictConfig, hardware: DictConfig | None = None) -> HFTeacher:
        from distill.hardware import inference_device
        from distill.models import load_teacher, load_teacher_tokenizer

        device = "cpu" if hardware is None else inference_device(hardware)
        tokenizer = load_teacher_tokenizer(cfg)  # a format problem surfaces before any weights
        return cls(
            lambda: (load_teacher(cfg, device=device), tokenizer),
            cfg.name,
            cfg.max_new_tokens,
            cfg.batch_size,
        )

    @property
    def max_tokens(self) -> int:
        return self.max_new_tokens

    def settings(self, max_tokens: int | None = None) -> dict[str, Any]:
        return {"decoding": "greedy", "max_new_tokens": max_tokens or self.max_new_tokens}

    def answer(self, requests: list[Request], journal: Journal) -> Iterator[tuple[str, Answer]]:
        """Greedy answers, batches of similar length and the same `max_tokens` together; each
        answer is journaled before it is yielded."""
        if not requests:
            return
        if self.model is None:
            self.model, self.tokenizer = self._load()
        prompts = {
            r.id: self.tokenizer.apply_chat_template(
                r.messages, add_generation_prompt=True, tokenize=False
            )
            for r in requests
        }
        lengths = {
            rid: len(self.tokenizer(p, add_special_tokens=False).input_ids)
            for rid, p in prompts.items()
        }
        order = sorted(requests, key=lambda r: (r.max_tokens, -lengths[r.id]))
        for batch in _batches(order, self.batch_size):
            answers = self._generate([prompts[r.id] for r in batch], batch[0].max_tokens)
            for request, answer in zip(batch, answers, strict=True):
                journal.answered(request.id, answer)
                yield request.id, answer

    def _generate(self, prompts: list[str], max_new_tokens: int) -> list[Answer]:
        import torch

        with torch.inference_mode():
            return self._generate_batch(prompts, max_new_tokens)

    def _generate_batch(self, prompts: list[str], max_new_tokens: int) -> list[Answer]:
        tok = self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"
        try:
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tok.padding_side = side
        out = self.model.generate(
            **enc.to(self.model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
        new = out[:, enc.input_ids.shape[1] :]
        answers = []
        for row, mask in zip(new, enc.attention_mask, strict=True):
            completion = int((row != tok.pad_token_id).sum())
            text = tok.decode(row, skip_special_tokens=True).strip()
            answers.append(
                Answer(text, {"input_tokens": int(mask.sum()), "output_tokens": completion})
            )
        return answers


def _batches(requests: list[Request], size: int) -> Iterator[list[Request]]:
    """Runs of at most `size` requests that share one `max_tokens`."""
    batch: list[Request] = []
    for r in requests:
        if batch and (len(batch) == size or r.max_tokens != batch[0].max_tokens):
            yield batch
            batch = []
        batch.append(r)
    if batch:
        yield batch
