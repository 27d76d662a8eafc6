"""On-policy sampling with a real tiny Llama (and a PEFT-wrapped one): no mocks."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model

from distill.testing import fake_batch, tiny_llama, tiny_tokenizer
from distill.training.on_policy import decode_samples, prompt_lengths, sample_on_policy

EOS, PAD, PROMPT = 5, 3, 4  # tiny tokenizer's <|im_end|> and <pad>; fake_batch prompts: 12 // 3


@pytest.fixture
def student():
    return tiny_llama(num_layers=2, seed=2).train()


@pytest.fixture
def batch():
    return fake_batch(tiny_tokenizer(), batch_size=3, length=12)


def sample(model, batch, seed=0, **kwargs):
    settings = dict(eos_id=EOS, pad_id=PAD, max_new_tokens=8, temperature=1.0)
    gen = torch.Generator().manual_seed(seed)
    return sample_on_policy(model, batch, generator=gen, **(settings | kwargs))


def responses(out) -> list[list[int]]:
    return [
        ids[lab != -100].tolist() for ids, lab in zip(out["input_ids"], out["labels"], strict=True)
    ]


def check_layout(batch, out, pad=PAD):
    """Prompt kept and unscored, response scored, then padding (pad id, -100, mask 0)."""
    for row, n in enumerate(prompt_lengths(batch).tolist()):
        ids, labels, mask = (out[k][row] for k in ("input_ids", "labels", "attention_mask"))
        assert torch.equal(ids[:n], batch["input_ids"][row, :n])
        assert (labels[:n] == -100).all()
        end = int(mask.sum())
        assert (mask[:end] == 1).all() and (mask[end:] == 0).all()
        assert torch.equal(labels[n:end], ids[n:end])
        assert (labels[end:] == -100).all() and (ids[end:] == pad).all()


def test_prompts_are_kept_and_the_sampled_responses_are_scored(student, batch):
    out = sample(student, batch, max_new_tokens=8)
    assert set(out) == {"input_ids", "attention_mask", "labels"}
    assert all(t.dtype == torch.long for t in out.values())
    check_layout(batch, out)
    lengths = [len(r) for r in responses(out)]
    assert all(1 <= n <= 8 for n in lengths)
    # Same prompts, new answers: the old answer tokens are gone.
    assert not torch.equal(out["input_ids"][0, PROMPT:12], batch["input_ids"][0, PROMPT:12])


def test_a_response_ends_at_its_first_eos_which_is_scored(student, batch):
    # First run: see what the student samples; then make one of its tokens the eos. The same
    # seed replays the same draws, so every row must now stop right after that token.
    before = responses(sample(student, batch, max_new_tokens=12))
    first = before[0]
    stop = next(t for j, t in enumerate(first) if j >= 1 and t not in first[:j] and t != EOS)
    for pad in (PAD, stop):  # a tokenizer without a pad token pads with eos
        out = sample(student, batch, max_new_tokens=12, eos_id=stop, pad_id=pad)
        after = responses(out)
        for old, new in zip(before, after, strict=True):
            if stop in old:
                assert new == old[: old.index(stop) + 1]
            else:  # it never sampled `stop` (it may have gone on past the old eos)
                assert new[: len(old)] == old and stop not in new
        assert after[0][-1] == stop
        assert len(after[0]) + PROMPT < out["input_ids"].shape[1]  # padding follows its eos
        check_layout(batch, out, pad=pad)


def test_the_same_seed_gives_the_same_samples_and_leaves_the_global_rng_alone(student, batch):
    state = torch.get_rng_state()
    first, again = sample(student, batch, seed=7), sample(student, batch, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert responses(sample(student, batch, seed=8)) != responses(first)
    # A generator advances: its next batch is a new draw.
    gen = torch.Generator().manual_seed(7)
    settings = dict(eos_id=EOS, pad_id=PAD, max_new_tokens=8, temperature=1.0, generator=gen)
    one, two = (sample_on_policy(student, batch, **settings) for _ in range(2))
    assert responses(one) == responses(first) and responses(two) != responses(one)


def test_without_a_generator_torch_manual_seed_decides(student, batch):
    settings = dict(eos_id=EOS, pad_id=PAD, max_new_tokens=8, temperature=1.0)
    torch.manual_seed(3)
    first = sample_on_policy(student, batch, **settings)
    torch.manual_seed(3)
    assert torch.equal(
        sample_on_policy(student, batch, **settings)["input_ids"], first["input_ids"]
    )


def test_sampling_runs_in_eval_mode_without_grad_and_restores_every_mode(student, batch):
    seen = []
    student.register_forward_pre_hook(
        lambda m, a: seen.append((m.training, torch.is_grad_enabled()))
    )
    student.model.layers[0].eval()  # mixed modes, as Lightning leaves frozen parts
    before = {name: m.training for name, m in student.named_modules()}
    out = sample(student, batch)
    assert seen and all(mode == (False, False) for mode in seen)
    assert {name: m.training for name, m in student.named_modules()} == before
    assert not any(t.requires_grad for t in out.values())
    student.eval()
    sample(student, batch)
    assert not student.training


def test_a_peft_student_samples_and_then_trains_on_its_samples(batch):
    model = get_peft_model(tiny_llama(seed=2), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    model.train()
    out = sample(model, batch)
    check_layout(batch, out)
    assert model.training
    model(**out).loss.backward()  # the samples are ordinary tensors, usable under autograd
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert grads and all(g is not None for g in grads)


def test_a_prompt_filling_the_whole_row_gets_no_room_under_max_length(student, batch):
    batch["labels"][1] = -100  # row 1: nothing scored, no padding: the prompt is the whole row
    out = sample(student, batch, max_length=12)
    assert torch.equal(out["input_ids"][1, :12], batch["input_ids"][1])
    assert (out["labels"][1] == -100).all() and out["attention_mask"][1, :12].all()
    assert out["input_ids"].shape[1] <= 12 and out["attention_mask"][1, 12:].sum() == 0
    check_layout(batch, out)
    # Without a cap the whole row is the prompt and the student answers after it.
    out = sample(student, batch)
    assert torch.equal(out["input_ids"][1, :12], batch["input_ids"][1])
    assert 1 <= (out["labels"][1] != -100).sum() <= 8


def test_max_length_caps_every_row_and_a_batch_with_no_room_is_not_sampled(student, batch):
    out = sample(student, batch, max_new_tokens=8, max_length=7)
    assert out["attention_mask"].sum(dim=1).max() <= 7
    assert all(len(r) <= 3 for r in responses(out))
    check_layout(batch, out)
    calls = []
    student.register_forward_pre_hook(lambda m, a: calls.append(1))
    out = sample(student, batch, max_length=PROMPT)
    assert not calls and (out["labels"] == -100).all()
    assert torch.equal(out["input_ids"], batch["input_ids"][:, :PROMPT])


def test_rows_without_a_prompt_and_bad_settings_are_refused(student, batch):
    batch["labels"][2, 0] = batch["input_ids"][2, 0]
    with pytest.raises(ValueError, match=r"rows \[2\] have no prompt tokens"):
        sample(student, batch)
    with pytest.raises(ValueError) as err:
        sample(student, fake_batch(tiny_tokenizer()), max_new_tokens=0, temperature=0.0, top_p=0)
    assert str(err.value) == (
        "on-policy sampling: max_new_tokens=0: must be >= 1; temperature=0.0: must be > 0 (1.0 "
        "samples the student as is); top_p=0: use (0, 1]; 1.0 keeps the whole distribution"
    )


def test_decode_samples_gives_prompt_and_response_text():
    tok = tiny_tokenizer()
    hi = [{"role": "user", "content": "hi"}]
    prompt = tok.apply_chat_template(hi, add_generation_prompt=True, tokenize=False)
    rows = [(prompt, "ok<|im_end|>"), (prompt, "yes, it is<|im_end|>")]
    encoded = [(tok(p, add_special_tokens=False).input_ids, tok(r).input_ids) for p, r in rows]
    width = max(len(p) + len(r) for p, r in encoded)
    batch = {k: torch.full((2, width), v) for k, v in (("input_ids", PAD), ("labels", -100))}
    batch["attention_mask"] = torch.zeros(2, width, dtype=torch.long)
    for row, (p, r) in enumerate(encoded):
        batch["input_ids"][row, : len(p + r)] = torch.tensor(p + r)
        batch["labels"][row, len(p) : len(p + r)] = torch.tensor(r)
        batch["attention_mask"][row, : len(p + r)] = 1
    assert decode_samples(batch, tok) == [
        {"prompt": prompt, "response": "ok<|im_end|>", "response_tokens": 3},
        {"prompt": prompt, "response": "yes, it is<|im_end|>", "response_tokens": 11},
    ]
    assert len(decode_samples(batch, tok, limit=1)) == 1
