"""A local Hugging Face causal LM as a teacher: batched greedy generation, and white-box outputs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill.teachers.base import Answer, Messages

log = logging.getLogger(__name__)


class HFTeacher:
    """Answers chat prompts with greedy decoding, longest prompts batched together.

    Args:
        load: returns (model in eval mode, tokenizer with a chat template and a pad token); called
            on the first `answer`, so a run with nothing left to ask loads no weights.
        name: recorded as the `teacher` of each record.
        max_new_tokens: per answer.
        batch_size: prompts generated together.
    """

    white_box = True

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
    def from_config(cls, cfg: DictConfig) -> HFTeacher:
        from distill.models import load_teacher, load_tokenizer

        return cls(
            lambda: (load_teacher(cfg), load_tokenizer(cfg.path)),
            cfg.name,
            cfg.max_new_tokens,
            cfg.batch_size,
        )

    def settings(self) -> dict[str, Any]:
        return {"decoding": "greedy", "max_new_tokens": self.max_new_tokens}

    def answer(self, conversations: list[Messages]) -> Iterator[tuple[int, Answer]]:
        if not conversations:
            return
        if self.model is None:
            self.model, self.tokenizer = self._load()
        prompts = [
            self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
            for c in conversations
        ]
        lengths = [len(self.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
        order = sorted(range(len(prompts)), key=lambda i: -lengths[i])
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for batch in tqdm(batches, desc=f"teacher {self.name}", unit="batch"):
            yield from zip(batch, self._generate([prompts[i] for i in batch]), strict=True)

    @torch.inference_mode()
    def _generate(self, prompts: list[str]) -> list[Answer]:
        tok = self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"
        try:
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            tok.padding_side = side
        out = self.model.generate(
            **enc.to(self.model.device),
            max_new_tokens=self.max_new_tokens,
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
