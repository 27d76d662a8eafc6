"""Batched generation with a Hugging Face causal LM: KV cache, left padding, greedy or sampling."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import (
    GenerationConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    StoppingCriteria,
    StoppingCriteriaList,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    """How rows are decoded.

    Attributes:
        max_new_tokens: Generation budget per row.
        do_sample: Sample (``temperature``, ``top_p``, no top-k) instead of greedy decoding.
        temperature: Sampling temperature.
        top_p: Nucleus sampling mass.
        stop_strings: Strings that end a row early (the caller still cuts at them).
        add_special_tokens: Let the tokenizer add BOS etc.; False for chat-templated text.
    """

    max_new_tokens: int
    do_sample: bool = False
    temperature: float = 0.8
    top_p: float = 0.95
    stop_strings: tuple[str, ...] = ()
    add_special_tokens: bool = True


def generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    num_samples: int = 1,
    temperature: float = 0.8,
    top_p: float = 0.95,
    *,
    add_special_tokens: bool = True,
    stop_strings: Sequence[str] | None = None,
) -> list[list[str]]:
    """Generate ``num_samples`` continuations of every prompt (1 decodes greedily, more sample).

    Args:
        model: A causal LM, possibly PEFT-wrapped or quantized.
        tokenizer: Its tokenizer; eos is used as pad when it has no pad token.
        prompts: Texts to continue, shape ``(num_prompts,)``.
        max_new_tokens: Generation budget per row.
        batch_size: Rows (prompt copies) per ``generate`` call.
        num_samples: Continuations per prompt.
        temperature: Sampling temperature (only when ``num_samples > 1``).
        top_p: Nucleus sampling mass (only when ``num_samples > 1``).
        add_special_tokens: Let the tokenizer add BOS etc.; False for chat-templated text.
        stop_strings: Strings that end a row early (it is still cut by the caller).

    Returns:
        Decoded new tokens without special tokens, shape ``(num_prompts, num_samples)``.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be positive.")
    sampling = Sampling(
        max_new_tokens,
        num_samples > 1,
        temperature,
        top_p,
        tuple(stop_strings or ()),
        add_special_tokens,
    )
    rows = [prompt for prompt in prompts for _ in range(num_samples)]
    texts = [""] * len(rows)
    for indices, decoded in iter_generate(model, tokenizer, rows, sampling, batch_size):
        for r, text in zip(indices, decoded, strict=True):
            texts[r] = text
    return [texts[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]


def iter_generate(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: Sequence[str],
    sampling: Sampling,
    batch_size: int,
    finished: Sequence[Callable[[str], bool]] | None = None,
) -> Iterator[tuple[list[int], list[str]]]:
    """Generate one continuation per row, yielding each batch as soon as it is done.

    Rows are sorted by prompt length (longest first, so memory peaks in the first batch) and
    left-padded; the KV cache is on. The model is put in eval mode and its previous mode restored
    when the iterator ends or is closed.

    Args:
        model: A causal LM, possibly PEFT-wrapped or quantized.
        tokenizer: Its tokenizer; eos is used as pad when it has no pad token.
        prompts: One text per row, shape ``(num_rows,)``; repeat a prompt to sample it n times.
        sampling: Decoding settings.
        batch_size: Rows per ``generate`` call.
        finished: Per row, a test of its text so far: the row stops once it holds (a chat
            answer whose code is complete); a batch ends when all its rows have stopped.

    Yields:
        ``(row indices, decoded new tokens)`` of one batch, special tokens skipped.
    """
    if batch_size < 1 or sampling.max_new_tokens < 1:
        raise ValueError(
            f"batch_size={batch_size} and max_new_tokens={sampling.max_new_tokens} must be "
            "positive."
        )
    if not prompts:
        return
    add_special = sampling.add_special_tokens
    lengths = [
        len(ids) for ids in tokenizer(list(prompts), add_special_tokens=add_special)["input_ids"]
    ]
    order = sorted(range(len(prompts)), key=lambda r: -lengths[r])
    was_training = model.training
    model.eval()
    try:
        with _left_padding(tokenizer), torch.inference_mode():
            config = _generation_config(model, tokenizer, sampling)
            with tqdm(total=len(order), desc="generate", unit="sample") as bar:
                for start in range(0, len(order), batch_size):
                    batch = order[start : start + batch_size]
                    rows = [prompts[r] for r in batch]
                    checks = None if finished is None else [finished[r] for r in batch]
                    texts = _generate_batch(model, tokenizer, rows, config, add_special, checks)
                    bar.update(len(batch))
                    yield batch, texts
    finally:
        model.train(was_training)


def _generate_batch(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    config: GenerationConfig,
    add_special_tokens: bool,
    checks: Sequence[Callable[[str], bool]] | None = None,
) -> list[str]:
    """One left-padded ``generate`` call; the new tokens of each row, decoded."""
    enc = tokenizer(
        prompts, return_tensors="pt", padding=True, add_special_tokens=add_special_tokens
    )
    device = _device(model)
    stopping = None
    if checks is not None:
        stopping = StoppingCriteriaList([_RowsDone(tokenizer, enc["input_ids"].shape[1], checks)])
    out = model.generate(
        input_ids=enc["input_ids"].to(device),
        attention_mask=enc["attention_mask"].to(device),
        generation_config=config,
        tokenizer=tokenizer if config.stop_strings else None,
        stopping_criteria=stopping,
    )
    new_tokens = out[:, enc["input_ids"].shape[1] :]  # (rows, new tokens)
    return tokenizer.batch_decode(new_tokens, skip_special_tokens=True)


class _RowsDone(StoppingCriteria):
    """Stops each row once its own test holds for its new tokens decoded so far (as the caller
    will decode them). A stopped row is not decoded again."""

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        prompt_length: int,
        checks: Sequence[Callable[[str], bool]],
    ) -> None:
        self.tokenizer, self.start, self.checks = tokenizer, prompt_length, checks
        self.done = [False] * len(checks)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        for row, check in enumerate(self.checks):
            if not self.done[row]:
                new = input_ids[row, self.start :]
                self.done[row] = check(self.tokenizer.decode(new, skip_special_tokens=True))
        return torch.tensor(self.done, device=input_ids.device)


def _generation_config(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, sampling: Sampling
) -> GenerationConfig:
    """A fresh config, so a checkpoint's own sampling defaults cannot change the evaluation.

    Stops at the tokenizer's eos and at any eos the model's generation config adds (e.g. an
    end-of-turn token). Called while :func:`_left_padding` guarantees a pad token.
    """
    eos_ids = _as_list(tokenizer.eos_token_id)
    model_config = getattr(model, "generation_config", None)
    if model_config is not None:
        eos_ids += [i for i in _as_list(model_config.eos_token_id) if i not in eos_ids]
    decoding = (
        {
            "do_sample": True,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "top_k": 0,
        }
        if sampling.do_sample
        else {"do_sample": False}
    )
    return GenerationConfig(
        max_new_tokens=sampling.max_new_tokens,
        eos_token_id=eos_ids or None,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
        stop_strings=list(sampling.stop_strings) or None,
        **decoding,
    )


def _as_list(token_id: int | list[int] | None) -> list[int]:
    if token_id is None:
        return []
    return list(token_id) if isinstance(token_id, (list, tuple)) else [token_id]


def _device(model: PreTrainedModel) -> torch.device:
    device = getattr(model, "device", None)
    return device if isinstance(device, torch.device) else next(model.parameters()).device


@contextmanager
def _left_padding(tokenizer: PreTrainedTokenizerBase) -> Iterator[None]:
    """Temporarily pad on the left (decoder-only generation), with eos as pad if none is set."""
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"
    if pad is None:
        if tokenizer.eos_token is None:
            raise ValueError("the tokenizer has neither a pad nor an eos token; set one of them.")
        tokenizer.pad_token = tokenizer.eos_token
    try:
        yield
    finally:
        tokenizer.padding_side = side
        if pad is None:
            tokenizer.pad_token = None
