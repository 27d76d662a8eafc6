"""Public test helpers: tiny random Llama models and an in-memory tokenizer (no files, no network).

Plugin authors use these to test their own losses:

    teacher, student, tokenizer = tiny_pair()
    batch = fake_batch(tokenizer)
"""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from distill.models.sources import build_once

TINY_VOCAB = 128
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Teacher and student share the vocabulary and differ in depth, as a real pair would.
TINY_LAYERS = {"teacher": 4, "student": 2}
TINY_SEEDS = {"teacher": 1, "student": 2}


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer with ChatML special tokens and exactly `TINY_VOCAB` ids.

    Printable ASCII plus Latin-1 letters fill the vocabulary, so every id a random model can emit
    decodes to visible text.
    """
    ascii_chars = sorted(set(string.printable) - set("\x0b\x0c\r"))
    extra = [
        chr(c) for c in range(0xC0, 0xC0 + TINY_VOCAB - len(SPECIAL_TOKENS) - len(ascii_chars))
    ]
    chars = ascii_chars + extra
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + chars)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        chat_template=CHATML,
    )


def tiny_llama(num_layers: int = 2, seed: int = 0) -> LlamaForCausalLM:
    """A random Llama with hidden size 32 and vocabulary 128, built in memory."""
    config = LlamaConfig(
        vocab_size=TINY_VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=5,
        pad_token_id=3,
        tie_word_embeddings=True,
        # Wide enough that greedy decoding does not collapse to one repeated token.
        initializer_range=0.5,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def tiny_pair() -> tuple[LlamaForCausalLM, LlamaForCausalLM, PreTrainedTokenizerFast]:
    """(teacher, student, tokenizer): 4 and 2 layers, one shared vocabulary."""
    teacher, student = (tiny_llama(TINY_LAYERS[r], TINY_SEEDS[r]) for r in ("teacher", "student"))
    return teacher, student, tiny_tokenizer()


def tiny_model_dir(role: str) -> Path:
    """A cached folder holding the tiny `role` model ("teacher" or "student") and its tokenizer."""
    if role not in TINY_LAYERS:
        raise ValueError(f"tiny model '{role}' is unknown; use one of {', '.join(TINY_LAYERS)}")

    def build(out: Path) -> None:
        tiny_llama(TINY_LAYERS[role], TINY_SEEDS[role]).save_pretrained(out)
        tiny_tokenizer().save_pretrained(out)

    return build_once(f"tiny-{role}-v4", build)


def fake_batch(
    tokenizer: PreTrainedTokenizerFast, batch_size: int = 2, length: int = 12, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A padded batch in the DataModule's format: the first third of each row is prompt (-100)."""
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(
        len(tokenizer.all_special_tokens), TINY_VOCAB - 30, (batch_size, length), generator=gen
    )
    attention_mask = torch.ones_like(input_ids)
    attention_mask[-1, -length // 4 :] = 0  # right padding on the last row
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    labels[:, : length // 3] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
