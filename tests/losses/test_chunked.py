"""The chunked token losses against a dense float64 reference: values, gradients, sparse caches."""

from __future__ import annotations

import pytest
import torch

from distill.losses import LOSSES, StepOutputs, build_loss, chunked
from distill.losses.base import SparseTargets
from distill.losses.chunked import fused_token_losses
from distill.testing import reference_loss

DIVERGENCES = ["kl", "reverse_kl", "jsd", "skew_kl", "tv"]
B, T, H, V = 3, 7, 5, 13  # odd sizes, so chunks never divide the rows evenly


def make(seed: int = 0, trainable_head: bool = True, bias: bool = False):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=gen, requires_grad=True)
    head = torch.nn.Linear(H, V, bias=bias)
    with torch.no_grad():
        head.weight.copy_(torch.randn(V, H, generator=gen))
        if bias:
            head.bias.copy_(torch.randn(V, generator=gen))
    head.requires_grad_(trainable_head)
    teacher = 2 * torch.randn(B, T, V, generator=gen)
    labels = torch.randint(0, V, (B, T), generator=gen)
    labels[:, :2] = -100  # prompt
    labels[1, -3:] = -100  # padding
    return hidden, head, teacher, labels


def dense_reference(name, hidden, head, teacher, labels, temperature=1.0, **kwargs):
    """`reference_loss` (float64, differentiable) on the head applied densely to `hidden`."""
    logits = hidden.double() @ head.weight.double().T
    if head.bias is not None:
        logits = logits + head.bias.double()
    return reference_loss(name, logits, teacher, labels, temperature, **kwargs)


def grads(value, hidden, head):
    hidden.grad = None
    head.zero_grad(set_to_none=True)
    value.backward()
    return [
        t.grad.clone()
        for t in (hidden, head.weight, head.bias)
        if t is not None and t.grad is not None
    ]


@pytest.mark.parametrize("name", ["ce", *DIVERGENCES])
@pytest.mark.parametrize("chunk_size", [1, 3, 7, 64])
def test_chunked_equals_dense_in_value_and_gradient(name, chunk_size):
    hidden, head, teacher, labels = make(bias=chunk_size == 3)
    kwargs = {} if name == "ce" else {"temperature": 2.0}
    loss = LOSSES.build(name, **kwargs)
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_logits=teacher)
    got = fused_token_losses(out, {"labels": labels}, {name: (loss, 1.0)}, chunk_size=chunk_size)
    want = dense_reference(name, hidden, head, teacher, labels, **kwargs)
    assert got.total.dtype == torch.float32
    assert got.total.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    got_grads, want_grads = grads(got.total, hidden, head), grads(want, hidden, head)
    assert len(got_grads) == len(want_grads) == (3 if head.bias is not None else 2)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w.float(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["ce", *DIVERGENCES])
@pytest.mark.parametrize(("sub_rows", "chunk_size"), [(2, 5), (3, 3), (4, 64)])
def test_the_loss_math_in_sub_chunks_equals_dense(name, sub_rows, chunk_size, monkeypatch):
    """A chunk's logits go through the losses a few rows at a time and are overwritten by their
    gradient: values, both gradients and the diagnostics equal the dense pass."""
    monkeypatch.setattr(chunked, "SUB_ELEMENTS", sub_rows * V)
    hidden, head, teacher, labels = make(seed=3, bias=True)
    loss = LOSSES.build(name, **({} if name == "ce" else {"temperature": 2.0}))
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_logits=teacher)
    got = fused_token_losses(
        out, {"labels": labels}, {name: (loss, 0.5)}, chunk_size=chunk_size, diagnostics=True
    )
    kwargs = {} if name == "ce" else {"temperature": 2.0}
    want = 0.5 * dense_reference(name, hidden, head, teacher, labels, **kwargs)
    assert got.total.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    want_kl = dense_reference("kl", hidden, head, teacher, labels).item()
    assert got.diagnostics["kl"].item() == pytest.approx(want_kl, rel=1e-5)
    for g, w in zip(grads(got.total, hidden, head), grads(want, hidden, head), strict=True):
        torch.testing.assert_close(g, w.float(), rtol=1e-4, atol=1e-6)


def test_under_bf16_autocast_the_head_runs_in_bf16_and_the_loss_math_in_fp32(monkeypatch):
    """The chunk's logits are bf16 (the head's matmul under autocast), each sub-chunk's loss math
    fp32: the value is within bf16 rounding of the dense fp32 loss, and the gradients too."""
    monkeypatch.setattr(chunked, "SUB_ELEMENTS", 2 * V)
    hidden, head, teacher, labels = make(seed=4)
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_logits=teacher)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fused_token_losses(
            out, {"labels": labels}, {"kl": (LOSSES.build("kl"), 1.0)}, chunk_size=5
        )
    want = dense_reference("kl", hidden, head, teacher, labels)
    assert got.total.dtype == torch.float32
    assert got.total.item() == pytest.approx(want.item(), rel=2e-2)
    got_grads, want_grads = grads(got.total, hidden, head), grads(want, hidden, head)
    assert [g.dtype for g in got_grads] == [torch.float32, torch.float32]
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w.float(), rtol=0.05, atol=0.02 * w.abs().max().item())


@pytest.mark.parametrize(("block_rows", "chunk_size"), [(2, 1), (5, 2), (4, 3), (1, 4)])
def test_the_head_gradient_gathered_in_blocks_equals_dense(block_rows, chunk_size, monkeypatch):
    # Blocks of a few rows, so the head's gradient is updated several times, at odd boundaries.
    monkeypatch.setattr(chunked, "HEAD_GRAD_BYTES", {4: block_rows * V * 4})
    hidden, head, teacher, labels = make(seed=1)
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_logits=teacher)
    got = fused_token_losses(
        out, {"labels": labels}, {"kl": (LOSSES.build("kl"), 1.0)}, chunk_size=chunk_size
    )
    want = dense_reference("kl", hidden, head, teacher, labels)
    for g, w in zip(grads(got.total, hidden, head), grads(want, hidden, head), strict=True):
        torch.testing.assert_close(g, w.float(), rtol=1e-4, atol=1e-6)


def test_one_unpadded_sequence_is_projected_from_a_view_and_equals_dense():
    hidden, head, teacher, labels = make(seed=2)
    hidden, teacher, labels = hidden[:1].detach().requires_grad_(), teacher[:1], labels[:1]
    rows = chunked.scored_rows(labels)  # positions 1..T-2: one contiguous run
    view = chunked.take_rows(hidden.flatten(0, 1), rows, chunked.first_of_run(rows))
    assert view.data_ptr() == hidden[0, 1].data_ptr()  # no copy of the hidden rows
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_logits=teacher)
    got = fused_token_losses(
        out, {"labels": labels}, {"kl": (LOSSES.build("kl"), 1.0)}, chunk_size=2
    )
    want = dense_reference("kl", hidden, head, teacher, labels)
    assert got.total.item() == pytest.approx(want.item(), rel=1e-5)
    for g, w in zip(grads(got.total, hidden, head), grads(want, hidden, head), strict=True):
        torch.testing.assert_close(g, w.float(), rtol=1e-4, atol=1e-6)


def test_a_frozen_head_gets_no_gradient_and_the_hidden_states_do():
    hidden, head, teacher, labels = make(trainable_head=False)
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_logits=teacher)
    total = LOSSES.build("kl")(out, {"labels": labels})
    total.backward()
    assert head.weight.grad is None
    want = dense_reference("kl", hidden.detach().requires_grad_(), head, teacher, labels)
    hidden_ref = hidden.detach().clone().requires_grad_()
    dense_reference("kl", hidden_ref, head, teacher, labels).backward()
    assert total.item() == pytest.approx(want.item(), rel=1e-5)
    torch.testing.assert_close(hidden.grad, hidden_ref.grad.float(), rtol=1e-4, atol=1e-6)


def test_student_vocabulary_beyond_the_shared_range_is_ignored():
    """CodeLlama-7B (32016 ids) against a 32000-id teacher: only the shared range is compared."""
    hidden, head, teacher, labels = make()
    shared = V - 2
    labels = labels.clamp(max=shared - 1).masked_fill(labels == -100, -100)
    out = StepOutputs(
        student_hidden=hidden, student_head=head, teacher_logits=teacher[..., :shared]
    )
    kl = LOSSES.build("kl")
    got = fused_token_losses(out, {"labels": labels}, {"kl": (kl, 1.0)}, vocab=shared).total
    sliced = torch.nn.Linear(H, shared, bias=False)
    sliced.weight = torch.nn.Parameter(head.weight[:shared].detach().clone())
    want = dense_reference("kl", hidden, sliced, teacher[..., :shared], labels)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    got.backward()
    assert head.weight.grad[shared:].abs().sum() == 0  # no gradient for ids the teacher lacks


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [("kl", {}), ("jsd", {}), ("jsd", {"beta": 0.1}), ("jsd", {"beta": 0.9}), ("skew_kl", {})],
)
@pytest.mark.parametrize("chunk_size", [2, 64])
def test_a_teacher_with_minus_inf_logits_gives_a_finite_loss_and_gradient(name, kwargs, chunk_size):
    """A masked or padded teacher vocabulary (-inf logits) adds 0 log 0 = 0, not 0 * -inf = NaN."""
    hidden, head, teacher, labels = make()
    teacher[..., -3:] = float("-inf")
    teacher[0, 3, :4] = float("-inf")
    loss = LOSSES.build(name, temperature=2.0, **kwargs)
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_logits=teacher)
    got = fused_token_losses(
        out, {"labels": labels}, {name: (loss, 1.0)}, chunk_size=chunk_size, diagnostics=True
    )
    want = dense_reference(name, hidden, head, teacher, labels, temperature=2.0, **kwargs)
    assert torch.isfinite(want)
    assert got.total.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    assert got.diagnostics["kl"].item() == pytest.approx(
        dense_reference("kl", hidden, head, teacher, labels).item(), rel=1e-5
    )
    got_grads, want_grads = grads(got.total, hidden, head), grads(want, hidden, head)
    for g, w in zip(got_grads, want_grads, strict=True):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, w.float(), rtol=1e-4, atol=1e-6)


def topk_cache(teacher: torch.Tensor, k: int, temperature: float = 1.0) -> SparseTargets:
    logp = torch.log_softmax(teacher / temperature, -1)
    top = logp.topk(k, -1)
    tail = torch.log1p(-top.values.exp().sum(-1).clamp(max=1.0))
    tail = tail.masked_fill(torch.tensor(k == teacher.shape[-1]), float("-inf"))
    return SparseTargets(top.indices, top.values, tail, "topk", temperature)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_a_full_topk_cache_equals_the_dense_loss(name):
    hidden, head, teacher, labels = make()
    cache = topk_cache(teacher, k=V)
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_sparse=cache)
    got = LOSSES.build(name)(out, {"labels": labels})
    want = dense_reference(name, hidden, head, teacher, labels)
    assert got.item() == pytest.approx(want.item(), rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("name", DIVERGENCES)
def test_a_topk_cache_with_a_tail_bucket_lower_bounds_the_dense_loss(name):
    """Bucketing is a coarsening, so an f-divergence can only shrink; k=8 of 13 stays close."""
    hidden, head, teacher, labels = make()
    out = StepOutputs(
        student_hidden=hidden, student_head=head, teacher_sparse=topk_cache(teacher, 8)
    )
    got = LOSSES.build(name)(out, {"labels": labels}).item()
    want = dense_reference(name, hidden, head, teacher, labels).item()
    assert got <= want + 1e-6
    assert got >= 0.5 * want


def sampled_cache(teacher: torch.Tensor, draws: int, gen: torch.Generator) -> SparseTargets:
    """Unique ids of `draws` teacher samples with log(count / draws), as the cache stores them."""
    probs = torch.softmax(teacher, -1)
    flat = probs.reshape(-1, probs.shape[-1])
    samples = torch.multinomial(flat, draws, replacement=True, generator=gen)
    counts = torch.zeros_like(flat).scatter_add_(
        -1, samples, torch.ones_like(samples, dtype=flat.dtype)
    )
    k = int((counts > 0).sum(-1).max())
    top = counts.topk(k, -1)
    logp = (top.values / draws).log().reshape(*teacher.shape[:-1], k)
    entropy = -(probs * probs.log()).sum(-1)
    ids = top.indices.reshape(*teacher.shape[:-1], k)
    tail = torch.full(teacher.shape[:-1], float("-inf"))
    return SparseTargets(ids, logp, tail, "sampled", 1.0, entropy)


def test_a_sampled_cache_is_unbiased_in_value_and_gradient():
    hidden, head, teacher, labels = make(trainable_head=False)
    want = dense_reference("kl", hidden, head, teacher, labels)
    (want_grad,) = grads(want, hidden, head)
    gen = torch.Generator().manual_seed(0)
    values, grad_sum, runs = [], torch.zeros_like(hidden), 300
    for _ in range(runs):
        out = StepOutputs(
            student_hidden=hidden, student_head=head, teacher_sparse=sampled_cache(teacher, 4, gen)
        )
        value = LOSSES.build("kl")(out, {"labels": labels})
        (grad,) = grads(value, hidden, head)
        values.append(value.item())
        grad_sum += grad
    mean = sum(values) / runs
    spread = torch.tensor(values).std().item() / runs**0.5
    assert abs(mean - want.item()) < 4 * spread  # the estimate is unbiased: within noise
    assert spread < 0.1 * want.item()
    torch.testing.assert_close(grad_sum / runs, want_grad.float(), rtol=0.15, atol=0.02)


@pytest.mark.parametrize("name", ["reverse_kl", "jsd", "tv"])
def test_divergences_that_need_the_full_teacher_refuse_a_sampled_cache(name):
    hidden, head, teacher, labels = make()
    cache = sampled_cache(teacher, 4, torch.Generator().manual_seed(0))
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_sparse=cache)
    with pytest.raises(
        ValueError, match=rf"loss\.components\.{name} cannot learn from a 'sampled'"
    ):
        build_loss({name: {"weight": 1.0}})(out, {"labels": labels})


def test_a_cache_captured_at_another_temperature_is_refused():
    hidden, head, teacher, labels = make()
    out = StepOutputs(
        student_hidden=hidden, student_head=head, teacher_sparse=topk_cache(teacher, 4)
    )
    with pytest.raises(ValueError, match=r"temperature=2.0 but the logit cache was captured at"):
        build_loss({"kl": {"temperature": 2.0}})(out, {"labels": labels})


def test_micro_batches_and_ranks_sum_to_the_global_batch_mean():
    """Token sums over `loss_tokens` = global tokens / shares: accumulation and DDP averaging
    of the shares then give exactly the value and gradient of one big batch."""
    hidden, head, teacher, labels = make()
    loss = build_loss({"ce": {"weight": 0.5}, "kl": {"weight": 0.5}})
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_logits=teacher)
    full = loss(out, {"labels": labels}).total
    full_grads = grads(full, hidden, head)

    shares = B  # e.g. 3 ranks x 1 accumulation step, or 1 rank x 3 micro-batches: one row each
    tokens = (labels[:, 1:] != -100).sum().float()
    total = 0.0
    for row in range(B):
        piece = StepOutputs(
            student_hidden=hidden[row : row + 1],
            student_head=head,
            teacher_logits=teacher[row : row + 1],
        )
        batch = {"labels": labels[row : row + 1], "loss_tokens": tokens / shares}
        total = total + loss(piece, batch).total / shares  # what Lightning and DDP divide by
    assert total.item() == pytest.approx(full.item(), rel=1e-6)
    for g, w in zip(grads(total, hidden, head), full_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)


def test_code_only_weighting_scores_only_code_tokens():
    hidden, head, teacher, labels = make()
    code = torch.zeros_like(labels, dtype=torch.bool)
    code[:, 4:6] = True
    loss = build_loss({"kl": {"token_weighting": "code_only"}})
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_logits=teacher)
    got = loss(out, {"labels": labels, "code_mask": code}).total
    scored = labels[:, 1:] != -100
    only_code = labels.clone()
    only_code[:, 1:] = labels[:, 1:].masked_fill(~code[:, 1:], -100)
    want = dense_reference("kl", hidden, head, teacher, only_code)
    share = (scored & code[:, 1:]).sum() / scored.sum()  # normalised by all scored tokens
    assert got.item() == pytest.approx((want * share).item(), rel=1e-5)


def test_teacher_confidence_weighting_matches_its_definition():
    hidden, head, teacher, labels = make()
    loss = build_loss({"ce": {"token_weighting": "teacher_confidence"}})
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_logits=teacher)
    got = loss(out, {"labels": labels}).total
    q_logp = torch.log_softmax((hidden @ head.weight.T).double()[:, :-1], -1)
    nll = -q_logp.gather(-1, labels[:, 1:].clamp(min=0)[..., None])[..., 0]
    confidence = torch.softmax(teacher[:, :-1].double(), -1).max(-1).values
    mask = labels[:, 1:] != -100
    assert got.item() == pytest.approx((nll * confidence)[mask].sum().item() / mask.sum().item())


def test_diagnostics_report_top1_agreement_and_kl():
    hidden, head, teacher, labels = make()
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_logits=teacher)
    ce = LOSSES.build("ce")
    diag = fused_token_losses(out, {"labels": labels}, {"ce": (ce, 1.0)}, diagnostics=True)
    logits = hidden @ head.weight.T
    mask = labels[:, 1:] != -100
    agree = (logits[:, :-1].argmax(-1) == teacher[:, :-1].argmax(-1))[mask].float().mean()
    assert diag.diagnostics["top1_agreement"].item() == pytest.approx(agree.item())
    want_kl = dense_reference("kl", hidden, head, teacher, labels).item()
    assert diag.diagnostics["kl"].item() == pytest.approx(want_kl, rel=1e-5)


def test_no_scored_token_gives_a_finite_zero_with_a_graph():
    hidden, head, teacher, labels = make()
    out = StepOutputs(student_hidden=hidden, student_head=head, teacher_logits=teacher)
    total = LOSSES.build("kl")(out, {"labels": torch.full_like(labels, -100)})
    assert total.item() == 0.0
    total.backward()
    assert hidden.grad.abs().sum() == 0


@pytest.mark.parametrize("diagnostics", [False, True])
def test_no_token_part_gives_zero_and_keeps_diagnostics(diagnostics):
    # e.g. attention transfer alone: the fused pass must not fail for want of a gradient
    hidden, head, teacher, labels = make()
    out = StepOutputs(teacher_logits=teacher, student_hidden=hidden, student_head=head)
    result = fused_token_losses(out, {"labels": labels}, {}, diagnostics=diagnostics)
    assert result.total.item() == 0.0 and result.values == {}
    assert set(result.diagnostics) == ({"top1_agreement", "kl"} if diagnostics else set())
    if diagnostics:
        assert result.diagnostics["kl"] > 0
