from distill.evaluation.generation import Sampling, generate, iter_generate

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


def test_iter_generate_yields_batches_longest_first(tiny_llama, char_tokenizer) -> None:
    prompts = ["ab", "abcdef", "a", "abcd", "abc"]
    sampling = Sampling(max_new_tokens=3)
    batches = list(iter_generate(tiny_llama, char_tokenizer, prompts, sampling, batch_size=2))
    assert [indices for indices, _ in batches] == [[1, 3], [4, 0], [2]]
    texts = {i: t for indices, decoded in batches for i, t in zip(indices, decoded, strict=True)}
    assert [texts[i] for i in range(5)] == [
        s[0] for s in generate(tiny_llama, char_tokenizer, prompts, 3, batch_size=5)
    ]


def test_closing_iter_generate_early_restores_the_model(tiny_llama, char_tokenizer) -> None:
    tiny_llama.train()
    rows = iter_generate(tiny_llama, char_tokenizer, PROMPTS, Sampling(4), batch_size=1)
    next(rows)
    assert not tiny_llama.training
    rows.close()  # what a KeyboardInterrupt in the consumer does
    assert tiny_llama.training and char_tokenizer.padding_side == "right"
    tiny_llama.eval()


def test_sampled_rows_differ_and_greedy_rows_repeat(tiny_llama, char_tokenizer) -> None:
    prompts = ["def f(x):\n"] * 6
    greedy = list(iter_generate(tiny_llama, char_tokenizer, prompts, Sampling(8), 6))[0][1]
    assert len(set(greedy)) == 1
    sampled = Sampling(8, do_sample=True, temperature=1.5, top_p=1.0)
    texts = list(iter_generate(tiny_llama, char_tokenizer, prompts, sampled, 6))[0][1]
    assert len(set(texts)) > 1
