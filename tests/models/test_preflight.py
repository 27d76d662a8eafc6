"""The tokenizer preflight on real in-memory tokenizers that differ the way real pairs do."""

from __future__ import annotations

import logging

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from distill.errors import UserError
from distill.models.preflight import TokenizerMismatch, check_tokenizer_pair
from distill.testing import CHATML, SPECIAL_TOKENS, TINY_VOCAB, tiny_tokenizer

# CodeLlama-7B/13B append 16 infilling ids to the vocabulary that 34B and -Python lack.
INFILL = [f"<FILL_{i}>" for i in range(16)]
PLAIN = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
RAISES = "{{ raise_exception('Conversation roles must alternate system/user/assistant') }}"


def tokens() -> list[str]:
    """The tiny tokenizer's tokens in id order."""
    vocab = tiny_tokenizer().get_vocab()
    return sorted(vocab, key=vocab.__getitem__)


def build(
    vocab: list[str], eos: str = "<|im_end|>", template: str | None = CHATML
) -> PreTrainedTokenizerFast:
    """A character-level tokenizer like `tiny_tokenizer`, over the tokens `vocab` in id order."""
    backend = Tokenizer(models.WordLevel({t: i for i, t in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token=eos,
        pad_token="<pad>",
        chat_template=template,
    )


def swapped(i: int, j: int) -> list[str]:
    vocab = tokens()
    vocab[i], vocab[j] = vocab[j], vocab[i]
    return vocab


def mismatch(*args, **kwargs) -> str:
    with pytest.raises(TokenizerMismatch) as err:
        check_tokenizer_pair(*args, **kwargs)
    return str(err.value)


def test_same_tokenizer_shares_the_whole_vocab_silently(caplog):
    with caplog.at_level(logging.WARNING):
        shared = check_tokenizer_pair(tiny_tokenizer(), build(tokens()), TINY_VOCAB, TINY_VOCAB)
    assert shared == TINY_VOCAB
    assert not caplog.records


def test_logits_wider_than_the_tokenizer_are_shared_when_both_models_pad_alike(caplog):
    # Padded embeddings (e.g. to a multiple of 64) leave logit rows no token maps to.
    with caplog.at_level(logging.WARNING):
        assert check_tokenizer_pair(tiny_tokenizer(), tiny_tokenizer(), 160, 160) == 160
    assert not caplog.records


def test_swapped_tokens_are_named_with_both_models_sizes_and_the_fix():
    message = mismatch(tiny_tokenizer(), build(swapped(40, 41)), TINY_VOCAB, TINY_VOCAB)
    student, teacher = tokens()[40], tokens()[41]
    assert "2 of the 128 shared ids map to different tokens" in message
    assert f"id 40: student {student!r}, teacher {teacher!r}" in message
    assert f"id 41: student {teacher!r}, teacher {student!r}" in message
    assert "student vocab 128 (128 tokenizer ids), teacher vocab 128 (128 tokenizer ids)" in message
    assert "use a teacher with the student's tokenizer" in message and "loss=ce" in message


def test_many_differences_show_the_first_few_and_the_count():
    vocab = tokens()
    shifted = vocab[:10] + vocab[11:60] + [vocab[10]] + vocab[60:]  # ids 10..59 move by one
    message = mismatch(tiny_tokenizer(), build(shifted), TINY_VOCAB, TINY_VOCAB)
    assert "50 of the 128 shared ids map to different tokens (first 5)" in message
    assert message.count("id 1") == 5  # ids 10..14, and no more
    assert "id 15:" not in message


def test_a_different_eos_is_an_error_naming_both_tokens_and_ids():
    message = mismatch(tiny_tokenizer(), build(tokens(), eos="</s>"), TINY_VOCAB, TINY_VOCAB)
    assert "eos token differs: student '<|im_end|>' (id 5), teacher '</s>' (id 2)" in message
    assert "bos token differs" not in message


def test_every_problem_is_reported_together():
    teacher = build(swapped(40, 41), eos="</s>", template=PLAIN)
    message = mismatch(tiny_tokenizer(), teacher, TINY_VOCAB, TINY_VOCAB, names=("7b", "34b"))
    assert message.startswith("7b and 34b do not share a tokenizer")
    assert "2 of the 128 shared ids" in message
    assert "eos token differs: 7b '<|im_end|>' (id 5), 34b '</s>' (id 2)" in message
    assert "chat templates render a sample conversation differently" in message
    assert isinstance(TokenizerMismatch(message), UserError)  # the CLI exits 2 without traceback


def test_infilling_ids_on_the_student_side_are_excluded_with_a_warning(caplog):
    student = build(tokens() + INFILL)
    with caplog.at_level(logging.WARNING, logger="distill.models.preflight"):
        shared = check_tokenizer_pair(student, tiny_tokenizer(), 144, TINY_VOCAB)
    assert shared == TINY_VOCAB
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "student vocab 144 != teacher vocab 128: the logit losses use the first 128 ids; the 16 "
        "id(s) 128..143 exist only in the student and are excluded from the logit losses"
    )


def test_infilling_ids_on_the_teacher_side_are_excluded_too(caplog):
    with caplog.at_level(logging.WARNING, logger="distill.models.preflight"):
        shared = check_tokenizer_pair(tiny_tokenizer(), build(tokens() + INFILL), TINY_VOCAB, 144)
    assert shared == TINY_VOCAB
    assert "exist only in the teacher" in caplog.records[0].getMessage()


def test_data_using_ids_outside_the_shared_range_is_an_error():
    student = build(tokens() + INFILL)
    used = torch.tensor([[7, 130, 9], [131, 130, 3]])
    message = mismatch(student, tiny_tokenizer(), 144, TINY_VOCAB, used_ids=used)
    assert "the data uses 2 token id(s) >= 128 (e.g. 130, 131)" in message
    assert "drop the records that use them" in message
    assert "student vocab 144 (144 tokenizer ids), teacher vocab 128 (128 tokenizer ids)" in message
    # The same data inside the shared range passes, given as a plain list too.
    assert check_tokenizer_pair(student, tiny_tokenizer(), 144, 128, used_ids=[7, 9, 127]) == 128


def test_a_special_token_among_the_excluded_ids_is_an_error():
    # Both tokenizers know the infilling ids, but the teacher's logits stop at 128.
    pair = [build(tokens() + INFILL, eos="<FILL_3>") for _ in range(2)]
    message = mismatch(*pair, 144, TINY_VOCAB)
    assert "eos id 131 ('<FILL_3>') is outside the shared 128 logit columns" in message


def test_tokens_only_one_tokenizer_knows_inside_shared_logits_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="distill.models.preflight"):
        shared = check_tokenizer_pair(build(tokens() + INFILL), tiny_tokenizer(), 160, 160)
    assert shared == 160
    (record,) = caplog.records
    assert "ids 128..143 are tokens only the student knows" in record.getMessage()
    with pytest.raises(TokenizerMismatch, match=r"2 token id\(s\) >= 128"):
        check_tokenizer_pair(
            build(tokens() + INFILL), tiny_tokenizer(), 160, 160, used_ids=[5, 140, 141]
        )


def test_different_chat_templates_are_an_error_naming_the_first_differing_tokens():
    message = mismatch(tiny_tokenizer(), build(tokens(), template=PLAIN), TINY_VOCAB, TINY_VOCAB)
    assert (
        "the chat templates render a sample conversation differently (first difference at token "
        "0: student ['<|im_start|>', 'u', 's'], teacher ['u', 's', 'e'])"
    ) in message
    assert "the teacher would score turn markers it was not tuned on" in message


def test_a_template_that_cannot_render_the_conversation_is_an_error():
    message = mismatch(tiny_tokenizer(), build(tokens(), template=RAISES), TINY_VOCAB, TINY_VOCAB)
    assert "the teacher chat template cannot render a user/assistant conversation" in message
    assert "roles must alternate" in message


def test_a_base_teacher_without_a_template_is_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="distill.models.preflight"):
        teacher = build(tokens(), template=None)
        assert check_tokenizer_pair(tiny_tokenizer(), teacher, TINY_VOCAB, TINY_VOCAB) == 128
    (record,) = caplog.records
    assert record.getMessage().startswith(
        "the teacher tokenizer has no chat template: the teacher reads the student's chat "
        "rendering as plain text"
    )
