import torch

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


def test_stop_strings_cut_generation_where_they_occur(tiny_llama, char_tokenizer) -> None:
    full = generate(tiny_llama, char_tokenizer, PROMPTS, max_new_tokens=24, batch_size=3)
    text = full[0][0]
    stop = text[8:10]  # a string the greedy continuation does reach, after 8 characters
    first = text.find(stop)
    stopped = generate(
        tiny_llama, char_tokenizer, PROMPTS, max_new_tokens=24, batch_size=3, stop_strings=[stop]
    )
    # Generation ends on the token that completes the first occurrence (one character here).
    assert stopped[0][0] == text[: first + len(stop)]
    for (row,), (out,) in zip(full[1:], stopped[1:], strict=True):  # the others stop at theirs
        cut = row.find(stop)
        assert out == (row if cut == -1 else row[: cut + len(stop)])


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


def sampled_texts(model, tokenizer, seed: int, temperature: float, n: int = 24) -> list[str]:
    torch.manual_seed(seed)
    sampling = Sampling(6, do_sample=True, temperature=temperature, top_p=1.0)
    rows = iter_generate(model, tokenizer, ["def f(x):\n"] * n, sampling, n)
    return list(rows)[0][1]


def test_sampling_follows_the_seed_and_the_temperature(tiny_llama, char_tokenizer) -> None:
    hot = sampled_texts(tiny_llama, char_tokenizer, seed=0, temperature=2.0)
    assert hot == sampled_texts(tiny_llama, char_tokenizer, seed=0, temperature=2.0)
    assert hot != sampled_texts(tiny_llama, char_tokenizer, seed=1, temperature=2.0)
    cold = sampled_texts(tiny_llama, char_tokenizer, seed=0, temperature=0.05)
    greedy = list(iter_generate(tiny_llama, char_tokenizer, ["def f(x):\n"], Sampling(6), 1))
    # Near zero temperature is greedy decoding; a high one spreads over many continuations.
    assert set(cold) == {greedy[0][1][0]}
    assert len(set(hot)) > len(hot) // 2


def test_a_row_stops_once_its_own_test_holds(tiny_llama, char_tokenizer) -> None:
    sampling = Sampling(max_new_tokens=24)
    ((order, texts),) = iter_generate(tiny_llama, char_tokenizer, PROMPTS, sampling, batch_size=3)
    full = dict(zip(order, texts, strict=True))
    assert len(full[0]) > 5 and len(full[1]) > 9
    # Row 0 stops after 5 characters, row 1 after its 9th, row 2 never: each is cut there alone.
    finished = [lambda t: len(t) >= 5, lambda t: len(t) >= 9, lambda t: False]
    ((order, texts),) = iter_generate(
        tiny_llama, char_tokenizer, PROMPTS, sampling, batch_size=3, finished=finished
    )
    stopped = dict(zip(order, texts, strict=True))
    assert [stopped[r] for r in range(3)] == [full[0][:5], full[1][:9], full[2]]
