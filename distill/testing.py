"""Public test helpers: tiny random Llama models and an in-memory tokenizer (no files, no network).

Plugin authors use these to test their own losses:

    teacher, student, tokenizer = tiny_pair()
    batch = fake_batch(tokenizer)
    check_loss_contract("my_loss")  # raises AssertionError naming what the component breaks
    reference_loss("kl", student_logits, teacher_logits, labels)  # float64, to compare against
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedTokenizerFast

from distill.losses import LOSSES
from distill.losses.base import STUDENT_OUTPUTS, TEACHER_OUTPUTS
from distill.models.cache import build_once
from distill.models.tiny import (
    CHATML,
    SPECIAL_TOKENS,
    TINY_LAYERS,
    TINY_VOCAB,
    tiny_llama,
    tiny_model_dir,
    tiny_pair,
    tiny_tokenizer,
)

__all__ = [  # the tiny models are re-exported: plugin authors test with them
    "CHATML",
    "CODELLAMA_VOCAB",
    "SPECIAL_TOKENS",
    "TINY_LAYERS",
    "TINY_VOCAB",
    "check_loss_contract",
    "reference_loss",
    "codellama_model_dir",
    "fake_batch",
    "tiny_llama",
    "tiny_model_dir",
    "tiny_pair",
    "tiny_tokenizer",
]


def fake_batch(
    tokenizer: PreTrainedTokenizerFast, batch_size: int = 2, length: int = 12, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A padded batch in the DataModule's format: the first third of each row is prompt (-100)."""
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(
        len(SPECIAL_TOKENS), TINY_VOCAB - 30, (batch_size, length), generator=gen
    )
    attention_mask = torch.ones_like(input_ids)
    attention_mask[-1, -length // 4 :] = 0  # right padding on the last row
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, : length // 3] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def _check(ok: bool, message: str) -> None:
    if not ok:  # not `assert`: the check must also hold under `python -O`
        raise AssertionError(message)


def _to_bf16(value):
    """bf16 copies of a tensor or a tuple of tensors (None stays None), keeping the graph."""
    if value is None:
        return None
    if isinstance(value, tuple):
        return tuple(v.to(torch.bfloat16) for v in value)
    return value.to(torch.bfloat16)


def check_loss_contract(name: str, **kwargs) -> torch.Tensor:
    """Check that the registered loss `name` keeps the component contract, on the tiny pair.

    The component is built with `kwargs` (its defaults when none are given) and run on the
    `StepOutputs` of the tiny teacher and student over `fake_batch`, handed over in bfloat16 as
    under bf16 training. It must declare only known `requires`, return a finite 0-d fp32 tensor
    whose backward reaches the student's parameters, and stay finite when no token is scored.

    Args:
        name: a name in `distill.losses.LOSSES`.
        **kwargs: constructor arguments of the component.

    Returns:
        The loss value, a 0-d fp32 tensor.

    Raises:
        AssertionError: naming the broken part of the contract.
    """
    from distill.training.module import step_outputs

    loss = LOSSES.build(name, **kwargs)
    unknown = set(loss.requires) - STUDENT_OUTPUTS - TEACHER_OUTPUTS
    allowed = ", ".join(sorted(STUDENT_OUTPUTS | TEACHER_OUTPUTS))
    _check(not unknown, f"loss '{name}': requires {sorted(unknown)}, not among {allowed}")
    teacher, student, tokenizer = tiny_pair()
    if {"attentions", "teacher_attentions"} & loss.requires:
        for model in (teacher, student):
            model.set_attn_implementation("eager")  # SDPA returns no attention maps
    if "second_pass" in loss.requires:  # two passes differ only through dropout
        for module in student.modules():
            if hasattr(module, "attention_dropout"):
                module.attention_dropout = 0.2
    student.train()
    batch = fake_batch(tokenizer)
    out = step_outputs(student, teacher, batch, loss.requires)
    for f in fields(out):
        setattr(out, f.name, _to_bf16(getattr(out, f.name)))
    value = loss(out, batch)
    _check(isinstance(value, torch.Tensor), f"loss '{name}' returned {type(value).__name__}")
    _check(value.dim() == 0, f"loss '{name}' returned shape {tuple(value.shape)}, not a scalar")
    _check(value.dtype == torch.float32, f"loss '{name}' returned {value.dtype}: upcast to fp32")
    _check(bool(torch.isfinite(value)), f"loss '{name}' returned {value.item()}")
    value.backward()
    reached = [p for p in student.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    _check(bool(reached), f"loss '{name}': backward reached no student parameter")
    empty = dict(batch, labels=torch.full_like(batch["labels"], -100))
    nothing = loss(out, empty)
    _check(bool(torch.isfinite(nothing)), f"loss '{name}' is {nothing.item()} with no token scored")
    return value.detach()


REFERENCE_LOSSES = ("ce", "kl", "reverse_kl", "jsd", "skew_kl", "tv")


def reference_loss(
    name: str,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    temperature: float = 1.0,
    **kwargs: float,
) -> torch.Tensor:
    """A token loss written densely in float64, independent of distill's chunked implementation.

    The mean over scored positions (logits at t score label t+1) of the per-token value, times
    T^2 for the divergences; differentiable, so gradients can be compared too. `0 log 0 = 0`: a
    teacher that gives a token no mass adds nothing.

    Args:
        name: one of REFERENCE_LOSSES: `ce` (cross-entropy on the labels, `label_smoothing`),
            `kl` KL(p || q), `reverse_kl` KL(q || p), `jsd` (`beta`: weight of p in the mixture),
            `skew_kl` KL(p || alpha p + (1 - alpha) q), `tv` (total variation); p the teacher's
            and q the student's distribution at `temperature`.
        student_logits / teacher_logits: (B, T, V); the teacher may be None for `ce`.
        labels: (B, T) with -100 where nothing is scored.

    Returns:
        A 0-d float64 tensor.
    """
    mask = labels[:, 1:] != -100
    if name == "ce":
        logp = torch.log_softmax(student_logits[:, :-1].double(), -1)
        smoothing = kwargs.get("label_smoothing", 0.0)
        target = logp.gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
        per = -(1 - smoothing) * target - smoothing * logp.mean(-1)
        return per[mask].mean()
    q = torch.softmax(student_logits[:, :-1].double() / temperature, -1)
    p = torch.softmax(teacher_logits[:, :-1].double() / temperature, -1)

    def kl(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return (torch.xlogy(a, a) - torch.xlogy(a, b)).sum(-1)

    if name == "kl":
        per = kl(p, q)
    elif name == "reverse_kl":
        per = kl(q, p)
    elif name == "jsd":
        beta = kwargs.get("beta", 0.5)
        m = beta * p + (1 - beta) * q
        per = beta * kl(p, m) + (1 - beta) * kl(q, m)
    elif name == "skew_kl":
        alpha = kwargs.get("alpha", 0.1)
        per = kl(p, alpha * p + (1 - alpha) * q)
    elif name == "tv":
        per = 0.5 * (p - q).abs().sum(-1)
    else:
        raise ValueError(f"no reference for '{name}'; references: {', '.join(REFERENCE_LOSSES)}")
    return per[mask].mean() * temperature**2


# Stand-ins for the 16 pieces CodeLlama adds to Llama 2's 32,000 (ids 32000-32015, used only by
# infilling; "▁<" is already piece 529, so its place here takes "▁<S"). What tests need is the
# vocabulary of 32,016 and pieces no chat rendering produces.
CODELLAMA_PIECES = [
    "▁<S", "▁<SUF", "▁<PRE", "▁<M", "▁<MID", "▁<E", "▁<EOT",
    "▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>",
    "▁<EOT><EOT>", "▁<EOT><EOT><EOT>", "▁<EOT><EOT><EOT><EOT>", "▁<EOT><EOT><EOT><EOT><EOT>",
    "▁<EOT><EOT><EOT><EOT><EOT><EOT>",
]  # fmt: skip
CODELLAMA_VOCAB = 32016


def sentencepiece_llama_tokenizer(tokenizer_model: Path) -> Any:
    """Llama 2's SentencePiece BPE `tokenizer_model` as a fast `LlamaTokenizer` that splits text
    as SentencePiece does: merges ranked by the pieces' scores. (transformers 5 converts such a
    file ranking merges by piece id, which puts the whitespace pieces `▁▁`, `▁▁▁▁`, ... first: it
    split every one of the 164 HumanEval+ solutions unlike SentencePiece, indentation as `▁▁▁▁`
    then `return` where CodeLlama was trained on `▁▁▁` then `▁return`.) BOS added, no chat
    template, no pad token, as Llama ships it. Text right after a special token gets no `▁`
    (`<s>[INST]` is `<s>`, `[`), as transformers 5 loads CodeLlama's own tokenizer
    (`CodeLlamaTokenizer`, Metaspace `prepend_scheme="first"`); SentencePiece and llama.cpp
    would write `▁[`."""
    import sentencepiece
    from transformers import LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    sp = sentencepiece.SentencePieceProcessor(model_file=str(tokenizer_model))
    pieces = [sp.id_to_piece(i) for i in range(sp.get_piece_size())]
    vocab = {piece: i for i, piece in enumerate(pieces)}
    scores = {piece: sp.get_score(i) for i, piece in enumerate(pieces)}
    return LlamaTokenizer(
        vocab=vocab,
        merges=generate_merges(vocab, scores),
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        add_bos_token=True,
    )


def codellama_model_dir(
    tokenizer_model: Path, infilling: bool = True, seed: int = 0, hidden_size: int = 64
) -> Path:
    """A cached folder with a CodeLlama-shaped tokenizer and a tiny random Llama to match.

    The tokenizer is Llama 2's SentencePiece `tokenizer_model` (e.g. shared/data/llama2_tokenizer)
    read by :func:`sentencepiece_llama_tokenizer`, plus CodeLlama's 16 infilling pieces:
    vocabulary 32,016, BOS `<s>` added, no chat template, no pad token, as
    `codellama/CodeLlama-7b-hf` ships it; with `infilling=False`, Llama 2's own 32,000 (a
    Llama-2-family teacher). Reading the SentencePiece file needs the `sentencepiece` package.

    Args:
        seed: torch seed of the random weights (a "teacher" differs from the "student").
    """
    vocab = CODELLAMA_VOCAB if infilling else CODELLAMA_VOCAB - len(CODELLAMA_PIECES)
    import hashlib

    digest = hashlib.sha256(Path(tokenizer_model).read_bytes()).hexdigest()[:12]

    def build(out: Path) -> None:
        tokenizer = sentencepiece_llama_tokenizer(Path(tokenizer_model))
        if infilling:
            tokenizer.add_tokens(CODELLAMA_PIECES)
        if len(tokenizer) != vocab:
            raise ValueError(f"{tokenizer_model}: {len(tokenizer)} pieces, not {vocab}")
        tokenizer.save_pretrained(out)
        # CodeLlama's special ids and untied head; no pad token
        overrides = {"eos_token_id": 2, "pad_token_id": None, "tie_word_embeddings": False}
        tiny_llama(2, seed, hidden_size, vocab_size=vocab, **overrides).save_pretrained(out)

    return build_once(f"tiny-llama{vocab}-{digest}-s{seed}-h{hidden_size}-v6", build)
