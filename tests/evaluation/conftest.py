"""Fixtures for the evaluation tests: a tiny random Llama and a character-level tokenizer."""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import pytest
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_char_tokenizer(pad: bool = True) -> PreTrainedTokenizerFast:
    """Character-level tokenizer over printable ASCII with a ChatML template."""
    chars = [c for c in string.printable if c not in "\r\x0b\x0c"]
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + chars)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(SPECIAL_TOKENS)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<pad>" if pad else None,
        additional_special_tokens=["<|im_start|>", "</s>"],
        chat_template=CHATML_TEMPLATE,
    )


def build_tiny_llama(vocab_size: int, hidden_size: int = 32, seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer random Llama (hidden size 32 unless given)."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=1,
        eos_token_id=5,
        pad_token_id=3,
    )
    return LlamaForCausalLM(config)


@dataclass
class EvalCfg:
    """Dataclass stand-in for the ``eval`` config group."""

    benchmark: str = "humaneval"
    limit: int | None = 3
    max_new_tokens: int = 8
    batch_size: int = 2
    timeout_s: float = 5.0
    prompt_format: str = "completion"
    k: list[int] = field(default_factory=lambda: [1])
    num_samples: int = 1
    temperature: float = 0.8
    top_p: float = 0.95
    workers: int = 2


@pytest.fixture(scope="session")
def char_tokenizer() -> PreTrainedTokenizerFast:
    return build_char_tokenizer()


@pytest.fixture(scope="session")
def tiny_llama(char_tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    return build_tiny_llama(len(char_tokenizer))
