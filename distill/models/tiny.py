"""Tiny random Llama models and a character-level ChatML tokenizer, built in memory.

`student.path=tiny:student` / `teacher.path=tiny:teacher` name cached folders of them, so tests and
smoke runs go through the real loading path with no download; `distill.testing` re-exports them
for plugin authors.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from distill.models.cache import build_once

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


def tiny_llama(
    num_layers: int = 2, seed: int = 0, hidden_size: int = 32, **overrides: Any
) -> LlamaForCausalLM:
    """A random Llama with vocabulary 128, built in memory.

    Args:
        num_layers: decoder layers.
        seed: torch seed for the weights.
        hidden_size: 32 by default; 4-bit tests need >= 64 (bitsandbytes' CPU block size).
        overrides: other LlamaConfig values (another vocabulary, special ids, an untied head).
    """
    settings = {
        "vocab_size": TINY_VOCAB,
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
        "bos_token_id": 1,
        "eos_token_id": 5,
        "pad_token_id": 3,
        "tie_word_embeddings": True,
        # Wide enough that greedy decoding does not collapse to one repeated token.
        "initializer_range": 0.5,
    }
    config = LlamaConfig(**{**settings, **overrides})
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
