"""On-policy batches as in GKD: the student answers the batch's prompts itself, then is distilled
on its own samples (Agarwal et al., 2024, https://arxiv.org/abs/2306.13649).

`sample_on_policy` turns a DataModule batch into one with the same prompts and student-sampled
responses; the teacher then scores those tokens online. Anything aligned with the old tokens (a
logit cache, per-token weights) no longer applies to the new batch and is not carried over.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from transformers import GenerationConfig, PreTrainedTokenizerBase

IGNORE_INDEX = -100


def prompt_lengths(batch: dict[str, Tensor]) -> Tensor:
    """(B,) tokens before each row's first scored label; the whole row when none is scored."""
    scored = batch["labels"] != IGNORE_INDEX
    first = scored.int().argmax(dim=1)
    return torch.where(scored.any(dim=1), first, batch["attention_mask"].sum(dim=1))


def sample_on_policy(
    student: nn.Module,
    batch: dict[str, Tensor],
    *,
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    max_length: int | None = None,
) -> dict[str, Tensor]:
    """The batch's prompts with responses sampled from the student, right-padded again.

    Each response stops after its first `eos_id` (a scored label, like the teacher's end of
    turn); what follows is padding. The student samples in eval mode without gradients (its
    previous modes are restored) from its full distribution at `temperature` (top-k off).

    Args:
        student: a Hugging Face (or PEFT-wrapped) causal LM, possibly in train mode.
        batch: `input_ids`, `attention_mask`, `labels` (B, T), right-padded; labels are -100 on the
            prompt and the padding, and a row's prompt is the tokens before its first scored label.
        eos_id: the token that ends a response (the student tokenizer's end of turn).
        pad_id: fills the padding.
        max_new_tokens: sampled tokens per row at most.
        temperature: the sampling temperature (not the distillation temperature), > 0.
        top_p: nucleus mass in (0, 1]; 1 samples the whole distribution.
        generator: seeds the sampling (and advances); None uses (and advances) torch's global RNG.
        max_length: caps prompt + response per row (e.g. data.max_length); a prompt that already
            fills it gets no response. Prompts are never cut.

    Returns:
        `input_ids`, `attention_mask`, `labels` (B, T'), on the batch's device: the prompt,
        then the sampled response (incl. its eos) as scored labels, then padding (-100, mask 0).
    """
    _check_settings(max_new_tokens, temperature, top_p)
    lengths = prompt_lengths(batch).tolist()
    empty = [row for row, n in enumerate(lengths) if n == 0]
    if empty:
        raise ValueError(
            f"sample_on_policy: rows {empty} have no prompt tokens (their first label is scored); "
            "on-policy sampling answers a prompt, so every row needs one"
        )
    budgets = [
        max_new_tokens if max_length is None else min(max_new_tokens, max_length - n)
        for n in lengths
    ]
    responses: list[list[int]] = [[] for _ in lengths]
    if max(budgets) > 0:
        new = _generate(
            student, batch, lengths, max(budgets), eos_id, pad_id, temperature, top_p, generator
        )
        responses = [_cut(row.tolist(), eos_id, b) for row, b in zip(new, budgets, strict=True)]
    prompts = [ids[:n].tolist() for ids, n in zip(batch["input_ids"], lengths, strict=True)]
    return _repack(prompts, responses, pad_id, batch["input_ids"].device)


def _check_settings(max_new_tokens: int, temperature: float, top_p: float) -> None:
    problems = []
    if max_new_tokens < 1:
        problems.append(f"max_new_tokens={max_new_tokens}: must be >= 1")
    if not temperature > 0:
        problems.append(f"temperature={temperature}: must be > 0 (1.0 samples the student as is)")
    if not 0 < top_p <= 1:
        problems.append(f"top_p={top_p}: use (0, 1]; 1.0 keeps the whole distribution")
    if problems:
        raise ValueError("on-policy sampling: " + "; ".join(problems))


def _generate(
    student: nn.Module,
    batch: dict[str, Tensor],
    lengths: list[int],
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
) -> Tensor:
    """(B, N) sampled tokens after the left-padded prompts (pad after a row has ended)."""
    device = next(student.parameters()).device
    width = max(lengths)
    ids = torch.full((len(lengths), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, n in enumerate(lengths):  # left padding: every row's next token is at column `width`
        ids[row, width - n :] = batch["input_ids"][row, :n]
        mask[row, width - n :] = 1
    # Pinned values, so a checkpoint's own defaults (top_k=50, a repetition penalty...), which
    # `generate` merges into unset fields, cannot bend it: GKD samples the student as it is.
    config = GenerationConfig(
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        top_k=0,
        repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        use_cache=True,
    )
    # no_grad, not inference_mode: the samples feed the next forward, which saves them for backward.
    with _sampling_mode(student), _seeded(generator, device), torch.no_grad():
        out = student.generate(
            input_ids=ids.to(device), attention_mask=mask.to(device), generation_config=config
        )
    return out[:, width:].cpu()


def _cut(tokens: list[int], eos_id: int, budget: int) -> list[int]:
    """The tokens up to and including the first eos, at most `budget` of them."""
    tokens = tokens[: max(budget, 0)]
    return tokens[: tokens.index(eos_id) + 1] if eos_id in tokens else tokens


def _repack(
    prompts: list[list[int]], responses: list[list[int]], pad_id: int, device: torch.device
) -> dict[str, Tensor]:
    width = max(len(p) + len(r) for p, r in zip(prompts, responses, strict=True))
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    labels = torch.full_like(ids, IGNORE_INDEX)
    mask = torch.zeros_like(ids)
    for row, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        n, m = len(prompt), len(response)
        ids[row, : n + m] = torch.tensor(prompt + response, dtype=torch.long)
        labels[row, n : n + m] = torch.tensor(response, dtype=torch.long)
        mask[row, : n + m] = 1
    return {
        "input_ids": ids.to(device),
        "attention_mask": mask.to(device),
        "labels": labels.to(device),
    }


@contextmanager
def _sampling_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) for sampling, then every submodule's own previous mode back
    (Lightning keeps frozen parts in eval while the rest trains)."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def _seeded(generator: torch.Generator | None, device: torch.device) -> Iterator[None]:
    """Sample from a seed drawn from `generator`, leaving torch's global RNG as it was.

    `generate` takes no generator, so the draw seeds the global RNG inside a fork of it.
    """
    if generator is None:
        yield
        return
    seed = int(torch.randint(2**62, (1,), generator=generator, device=generator.device))
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda, device_type="cuda"):
        torch.random.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def decode_samples(
    batch: dict[str, Tensor], tokenizer: PreTrainedTokenizerBase, limit: int = 4
) -> list[dict]:
    """Prompt and response text of the first `limit` rows, for logging on-policy samples.

    Args:
        batch: `input_ids`, `attention_mask`, `labels` (B, T) as `sample_on_policy` returns.
        tokenizer: the student's tokenizer.
        limit: rows to decode.

    Returns:
        One dict per row: `prompt` and `response` text (special tokens kept, so a chat turn and
        its end are visible) and `response_tokens`, the count of scored tokens.
    """
    rows = []
    lengths = prompt_lengths(batch)
    for row in range(min(limit, batch["input_ids"].shape[0])):
        ids, n = batch["input_ids"][row], int(lengths[row])
        end = int(batch["attention_mask"][row].sum())
        rows.append(
            {
                "prompt": tokenizer.decode(ids[:n].tolist()),
                "response": tokenizer.decode(ids[n:end].tolist()),
                "response_tokens": int((batch["labels"][row] != IGNORE_INDEX).sum()),
            }
        )
    return rows


@dataclass
class OnPolicy:
    """When to replace a batch's answers with the student's samples, and how to sample them.

    Args:
        lmbda: the share of micro-batches that are on-policy, in [0, 1].
        schedule: multiplies `lmbda` at each optimizer step (a distill.losses schedule), or None.
        eos_id / pad_id: the student tokenizer's end-of-turn and padding ids.
        max_new_tokens / temperature / top_p: sampling settings (not the distillation temperature).
        max_length: cap on prompt + response tokens (data.max_length).
        seed: the draws depend only on seed, step and micro-batch index, so a resumed run draws the
            same batches as an uninterrupted one.
        tokenizer / log_samples: decode and log this many sampled responses per logging step.
    """

    lmbda: float
    eos_id: int
    pad_id: int
    max_new_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    max_length: int | None = None
    schedule: Callable[[int, int], float] | None = None
    seed: int = 0
    tokenizer: PreTrainedTokenizerBase | None = None  # to log the sampled responses
    log_samples: int = 2

    def fraction(self, step: int, max_steps: int) -> float:
        scale = 1.0 if self.schedule is None else self.schedule(step, max_steps)
        return min(max(self.lmbda * scale, 0.0), 1.0)

    def chosen(self, step: int, max_steps: int, batch_idx: int) -> bool:
        """Whether micro-batch `batch_idx` at optimizer step `step` is sampled from the student."""
        fraction = self.fraction(step, max_steps)
        if fraction <= 0.0:
            return False
        draw = random.Random(f"{self.seed}/{step}/{batch_idx}").random()
        return draw < fraction

    def sample(self, student: nn.Module, batch: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        return sample_on_policy(
            student,
            batch,
            eos_id=self.eos_id,
            pad_id=self.pad_id,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            generator=generator,
            max_length=self.max_length,
        )
