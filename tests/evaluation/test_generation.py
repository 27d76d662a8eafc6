from distill.evaluation.generation import generate

from .conftest import build_char_tokenizer

PROMPTS = ["def f(x):\n", "a much longer prompt than the others\n    ", "x"]


def test_greedy_is_batch_invariant_and_keeps_order(tiny_llama, char_tokenizer) -> None:
    batched = generate(tiny_llama, char_tokenizer, PROMPTS, max_new_tokens=6, batch_size=3)
    single = [
        generate(tiny_llama, char_tokenizer, [p], max_new_tokens=6, batch_size=1)[0]
        for p in PROMPTS
    ]
    assert batched == single
    assert [len(samples) for samples in batched] == [1, 1, 1]
    assert all(isinstance(s[0], str) and len(s[0]) <= 6 for s in batched)
    assert char_tokenizer.padding_side == "right"


def test_sampling_returns_num_samples_per_prompt(tiny_llama, char_tokenizer) -> None:
    out = generate(
        tiny_llama,
        char_tokenizer,
        PROMPTS,
        max_new_tokens=5,
        batch_size=4,
        num_samples=3,
        temperature=1.0,
        top_p=0.95,
    )
    assert [len(samples) for samples in out] == [3, 3, 3]


def test_missing_pad_token_uses_eos_and_restores(tiny_llama) -> None:
    tokenizer = build_char_tokenizer(pad=False)
    tiny_llama.train()
    out = generate(tiny_llama, tokenizer, PROMPTS[:2], max_new_tokens=4, batch_size=2)
    assert len(out) == 2
    assert tokenizer.pad_token is None
    assert tiny_llama.training  # previous mode restored
    tiny_llama.eval()


def test_stop_strings_accepted(tiny_llama, char_tokenizer) -> None:
    out = generate(
        tiny_llama,
        char_tokenizer,
        PROMPTS,
        max_new_tokens=6,
        batch_size=2,
        stop_strings=["\ndef ", "\n#"],
    )
    assert len(out) == 3
