"""Preflight for a white-box teacher: do student and teacher share the tokenizer the logits index?

Logit losses compare the two models' distributions id by id, so id 17 must be the same token for
both, and the teacher must read the student's token sequences as it was tuned to read them. Run
`check_tokenizer_pair` before training with an online teacher or its logit cache; it raises
`TokenizerMismatch` (a `UserError`: the CLI prints it without a traceback and exits 2) or returns
the vocabulary size the logit losses may use.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import torch
from transformers import PreTrainedTokenizerBase

from distill.errors import UserError

log = logging.getLogger(__name__)
SPECIAL = ("bos", "eos", "pad", "unk")
SHOWN = 5  # differing ids listed in a message; the count covers the rest
SAMPLE_CONVERSATION = [
    {"role": "user", "content": "Write a Python function that adds two numbers."},
    {"role": "assistant", "content": "def add(a, b):\n    return a + b"},
]
FIX = (
    "use a teacher with the student's tokenizer (same vocabulary, special tokens and chat "
    "template), or loss=ce, which needs no teacher logits"
)


class TokenizerMismatch(UserError, ValueError):
    """Student and teacher tokenizers disagree where the logit losses need them to agree."""


def check_tokenizer_pair(
    student_tokenizer: PreTrainedTokenizerBase,
    teacher_tokenizer: PreTrainedTokenizerBase,
    student_vocab: int,
    teacher_vocab: int,
    *,
    used_ids: torch.Tensor | Iterable[int] | None = None,
    names: tuple[str, str] = ("student", "teacher"),
) -> int:
    """Check that the logit losses may compare the two models' logits id by id.

    Checks, all reported together: the tokens of the ids both tokenizers know, the bos/eos/pad/unk
    tokens and ids, the chat templates (on a sample conversation), that the special ids and
    `used_ids` lie in the shared range. Ids beyond it are excluded from the logit losses, with a
    warning that says how many.

    Args:
        student_tokenizer: the student's tokenizer (the one the data is encoded with).
        teacher_tokenizer: the teacher's tokenizer.
        student_vocab: the student's `config.vocab_size` (its logits width; may exceed
            `len(student_tokenizer)` when the embedding is padded).
        teacher_vocab: the teacher's `config.vocab_size`.
        used_ids: token ids of the training data (any shape), checked to lie in the shared range.
        names: how messages call the student and the teacher (e.g. the config names).

    Returns:
        `min(student_vocab, teacher_vocab)`: the logit columns both models share.

    Raises:
        TokenizerMismatch: naming every disagreement, both models' sizes and the fix.
    """
    toks = (student_tokenizer, teacher_tokenizer)
    vocabs = (student_vocab, teacher_vocab)
    shared = min(vocabs)
    problems = _token_differences(toks, names) + _special_differences(toks, names)
    problems += _template_differences(toks, names)
    if not problems:  # ranges only mean something once the ids agree
        problems += _range_problems(toks, shared, used_ids, names)
    sizes = ", ".join(
        f"{n} vocab {v} ({len(t)} tokenizer ids)"
        for n, t, v in zip(names, toks, vocabs, strict=True)
    )
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise TokenizerMismatch(
            f"{names[0]} and {names[1]} do not share a tokenizer, which logit distillation needs "
            f"({sizes}):\n{lines}\nFix: {FIX}."
        )
    _warn_excluded(toks, vocabs, shared, names)
    return shared


def _token_differences(toks: tuple, names: tuple[str, str]) -> list[str]:
    """The ids both tokenizers know that map to different tokens."""
    ids = list(range(min(len(t) for t in toks)))
    tokens = [t.convert_ids_to_tokens(ids) for t in toks]
    differ = [i for i, a, b in zip(ids, *tokens, strict=True) if a != b]
    if not differ:
        return []
    shown = "; ".join(
        f"id {i}: {names[0]} {tokens[0][i]!r}, {names[1]} {tokens[1][i]!r}" for i in differ[:SHOWN]
    )
    more = f" (first {SHOWN})" if len(differ) > SHOWN else ""
    return [f"{len(differ)} of the {len(ids)} shared ids map to different tokens{more}: {shown}"]


def _special_differences(toks: tuple, names: tuple[str, str]) -> list[str]:
    """bos/eos/pad/unk whose token or id differ."""
    problems = []
    for kind in SPECIAL:
        pair = [(getattr(t, f"{kind}_token"), getattr(t, f"{kind}_token_id")) for t in toks]
        if pair[0] != pair[1]:
            (s_tok, s_id), (t_tok, t_id) = pair
            problems.append(
                f"{kind} token differs: {names[0]} {s_tok!r} (id {s_id}), "
                f"{names[1]} {t_tok!r} (id {t_id})"
            )
    return problems


def _render(tok: PreTrainedTokenizerBase) -> list[int]:
    """Token ids of the sample conversation: the prompt turn with its generation prompt, then
    the whole conversation (the DataModule's two renderings)."""
    prompt = tok.apply_chat_template(
        SAMPLE_CONVERSATION[:1], add_generation_prompt=True, tokenize=False
    )
    full = tok.apply_chat_template(SAMPLE_CONVERSATION, tokenize=False)
    return [
        *tok(prompt, add_special_tokens=False).input_ids,
        *tok(full, add_special_tokens=False).input_ids,
    ]


def _template_differences(toks: tuple, names: tuple[str, str]) -> list[str]:
    """Chat templates that turn the sample conversation into different token ids.

    An error, not a warning: the teacher's logits (online or cached) are taken on the student's
    rendering. A teacher tuned on another turn format reads every prompt out of distribution and,
    above all, predicts its own turn ends where the student's template puts its end-of-turn token,
    the scored last label of every answer; distilling that teaches the student wrong stops. A
    cache built from the teacher's own rendering would not even align position by position.
    Only when one side has no template (a base model) is it a warning: there is no turn format
    to disagree with, and the base model scores the rendering as plain text.
    """
    has = [bool(getattr(t, "chat_template", None)) for t in toks]
    if not any(has):
        return []
    if not all(has):
        missing = names[has.index(False)]
        log.warning(
            "the %s tokenizer has no chat template: the %s reads the %s's chat rendering as plain "
            "text; its logits on turn markers are those of a base model",
            missing,
            missing,
            names[has.index(True)],
        )
        return []
    rendered = []
    for tok, name in zip(toks, names, strict=True):
        try:
            rendered.append(_render(tok))
        except Exception as err:  # jinja raises its own types (e.g. "roles must alternate")
            return [f"the {name} chat template cannot render a user/assistant conversation: {err}"]
    if rendered[0] == rendered[1]:
        return []
    at = next(
        (i for i, (a, b) in enumerate(zip(*rendered, strict=False)) if a != b),
        min(map(len, rendered)),
    )
    shown = [
        repr(tok.convert_ids_to_tokens(ids[at : at + 3]))
        for tok, ids in zip(toks, rendered, strict=True)
    ]
    return [
        f"the chat templates render a sample conversation differently (first difference at token "
        f"{at}: {names[0]} {shown[0]}, {names[1]} {shown[1]}), so the teacher would score turn "
        "markers it was not tuned on"
    ]


def _range_problems(
    toks: tuple, shared: int, used_ids: torch.Tensor | Iterable[int] | None, names: tuple[str, str]
) -> list[str]:
    """Special ids and data ids that the shared logits cannot score."""
    problems = [
        f"{kind} id {i} ({getattr(toks[0], f'{kind}_token')!r}) is outside the shared "
        f"{shared} logit columns"
        for kind in SPECIAL
        if (i := getattr(toks[0], f"{kind}_token_id")) is not None and i >= shared
    ]
    if used_ids is not None:
        ids = torch.as_tensor(list(used_ids) if not torch.is_tensor(used_ids) else used_ids)
        safe = min(shared, *(len(t) for t in toks))  # also known to both tokenizers
        outside = ids[ids >= safe].unique()
        if outside.numel():
            shown = ", ".join(str(int(i)) for i in outside[:SHOWN])
            problems.append(
                f"the data uses {outside.numel()} token id(s) >= {safe} (e.g. {shown}), which "
                f"the logit losses cannot compare (both models' logits and both tokenizers "
                f"cover only ids < {safe}); drop the records that use them"
            )
    return problems


def _warn_excluded(toks: tuple, vocabs: tuple[int, int], shared: int, names: tuple) -> None:
    """Say how many ids fall outside what both sides know: never truncate silently."""
    if vocabs[0] != vocabs[1]:
        wider = names[vocabs.index(max(vocabs))]
        log.warning(
            "%s vocab %d != %s vocab %d: the logit losses use the first %d ids; the %d id(s) "
            "%d..%d exist only in the %s and are excluded from the logit losses (pass used_ids "
            "to check that the data never uses them)",
            names[0], vocabs[0], names[1], vocabs[1], shared,
            max(vocabs) - shared, shared, max(vocabs) - 1, wider,
        )  # fmt: skip
    lengths = [len(t) for t in toks]
    if lengths[0] != lengths[1] and min(lengths) < shared:
        longer = names[lengths.index(max(lengths))]
        log.warning(
            "the %s tokenizer knows %d ids, the %s tokenizer %d: ids %d..%d are tokens only the "
            "%s knows, scored against untrained logit rows of the other model; pass used_ids to "
            "check that the data avoids them",
            names[0], lengths[0], names[1], lengths[1],
            min(lengths), min(max(lengths), shared) - 1, longer,
        )  # fmt: skip
