"""Batched generation with a Hugging Face causal LM."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


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
    """Generate ``num_samples`` continuations of every prompt.

    Rows are sorted by prompt length (longest first, so memory peaks in the first batch) and
    left-padded, and results are returned in the input order. The model is put in eval mode and
    its previous mode restored afterwards.

    Args:
        model: A causal LM, possibly PEFT-wrapped or quantized.
        tokenizer: Its tokenizer; eos is used as pad when it has no pad token.
        prompts: Texts to continue, shape ``(num_prompts,)``.
        max_new_tokens: Generation budget per row.
        batch_size: Rows (prompt copies) per ``generate`` call.
        num_samples: Continuations per prompt; 1 decodes greedily, more sample.
        temperature: Sampling temperature (only when ``num_samples > 1``).
        top_p: Nucleus sampling mass (only when ``num_samples > 1``).
        add_special_tokens: Let the tokenizer add BOS etc.; False for chat-templated text.
        stop_strings: Strings that end a row early (it is still cut by the caller).

    Returns:
        Decoded new tokens without special tokens, shape ``(num_prompts, num_samples)``.
    """
    if num_samples < 1 or batch_size < 1 or max_new_tokens < 1:
        raise ValueError(
            f"num_samples={num_samples}, batch_size={batch_size} and "
            f"max_new_tokens={max_new_tokens} must all be positive."
        )
    rows = [i for i in range(len(prompts)) for _ in range(num_samples)]
    lengths = [
        len(ids)
        for ids in tokenizer(list(prompts), add_special_tokens=add_special_tokens)["input_ids"]
    ]
    order = sorted(range(len(rows)), key=lambda r: -lengths[rows[r]])
    device = _device(model)
    texts = [""] * len(rows)
    was_training = model.training
    model.eval()
    try:
        with _left_padding(tokenizer), torch.inference_mode():
            config = _generation_config(
                model, tokenizer, max_new_tokens, num_samples, temperature, top_p, stop_strings
            )
            for start in tqdm(range(0, len(order), batch_size), desc="generate", unit="batch"):
                batch = order[start : start + batch_size]
                enc = tokenizer(
                    [prompts[rows[r]] for r in batch],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=add_special_tokens,
                )
                out = model.generate(
                    input_ids=enc["input_ids"].to(device),
                    attention_mask=enc["attention_mask"].to(device),
                    generation_config=config,
                    tokenizer=tokenizer if stop_strings else None,
                )
                new_tokens = out[:, enc["input_ids"].shape[1] :]
                decoded = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
                for r, text in zip(batch, decoded, strict=True):
                    texts[r] = text
    finally:
        model.train(was_training)
    results: list[list[str]] = [[] for _ in prompts]
    for r, text in enumerate(texts):
        results[rows[r]].append(text)
    return results


def _generation_config(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    max_new_tokens: int,
    num_samples: int,
    temperature: float,
    top_p: float,
    stop_strings: Sequence[str] | None,
) -> GenerationConfig:
    """A fresh config, so a checkpoint's own sampling defaults cannot change the evaluation.

    Stops at the tokenizer's eos and at any eos the model's generation config adds (e.g. an
    end-of-turn token). Called while :func:`_left_padding` guarantees a pad token.
    """
    eos_ids = _as_list(tokenizer.eos_token_id)
    model_config = getattr(model, "generation_config", None)
    if model_config is not None:
        eos_ids += [i for i in _as_list(model_config.eos_token_id) if i not in eos_ids]
    sampling = (
        {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": 0}
        if num_samples > 1
        else {"do_sample": False}
    )
    return GenerationConfig(
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_ids or None,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
        stop_strings=list(stop_strings) if stop_strings else None,
        **sampling,
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
