"""The token losses of a step in one chunked pass that never holds (B, T, V) student logits.

Rows are the scored positions only (prompt and padding are never projected). For each chunk of
rows the student's lm_head is applied, the fp32 logits are handed to every active token loss, and
the gradient of the weighted sum with respect to those logits is turned at once into gradients for
the hidden states (and the head, when it is trainable). The backward pass only scales what the
forward pass stored: measured on a CPU this was as fast as the dense loss, while recomputing each
chunk in backward was 23-59% slower (see experiments/performance/kd_loss).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from distill.losses.base import StepOutputs, kl_per_token, loss_tokens
from distill.losses.rows import SparseRows, TokenChunk, teacher_token_weights

if TYPE_CHECKING:  # the token losses call this pass; it only reads their attributes
    from distill.losses.token import TokenLoss

# Elements of one chunk's fp32 logits: 2**21 is 8 MiB, about 64 rows of a 32k vocabulary.
CHUNK_ELEMENTS = 2**21
# Bytes of logit gradients gathered before one update of a trainable head's (V, H) gradient, by
# the head's element size: 131 fp32 or 524 bf16 rows of a 32k vocabulary. Fewer, larger updates
# pass over the (V, H) accumulator fewer times; a 16-bit accumulator is also rounded fewer times,
# so it gets the larger block (measured: experiments/performance/kd_loss).
HEAD_GRAD_BYTES = {4: 2**24, 2: 2**25}


@dataclass
class FusedResult:
    """`total`: the weighted sum (differentiable); `values`: each part's unweighted value;
    `diagnostics`: top-1 agreement and mean KL(teacher || student) at T=1, when asked for."""

    total: Tensor
    values: dict[str, Tensor]
    diagnostics: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class _Job:
    """Everything the autograd function needs besides its differentiable inputs."""

    parts: Mapping[str, tuple[TokenLoss, float]]
    labels: Tensor  # (N,)
    teacher: Tensor | None  # (B*T, V) flat view; `rows` index it
    rows: Tensor  # (N,)
    sparse: SparseRows | None
    code: Tensor | None
    normalizer: Tensor | float
    chunk_size: int
    vocab: int | None
    diagnostics: bool
    compute_dtype: torch.dtype | None = None  # of the head matmul; None: the head's own
    first_row: int | None = None  # set when `rows` is one contiguous run starting there
    values: dict[str, Tensor] = field(default_factory=dict)
    diag: dict[str, Tensor] = field(default_factory=dict)

    def chunk(self, start: int, end: int) -> TokenChunk:
        sparse = self.sparse
        if sparse is not None:
            sparse = SparseRows(
                sparse.ids[start:end],
                sparse.logp[start:end],
                sparse.tail_logp[start:end],
                sparse.kind,
                sparse.temperature,
                None if sparse.entropy is None else sparse.entropy[start:end],
            )
        teacher = None
        if self.teacher is not None and self.first_row is not None:  # a view: no (n, V) copy
            end = min(end, len(self.rows))
            teacher = self.teacher[self.first_row + start : self.first_row + end, : self.vocab]
        elif self.teacher is not None:
            teacher = self.teacher.index_select(0, self.rows[start:end])[:, : self.vocab]
        code = None if self.code is None else self.code[start:end]
        return TokenChunk(self.labels[start:end], teacher, sparse, code)

    def chunk_total_and_grad(self, s_logits: Tensor, chunk: TokenChunk) -> tuple[Tensor, Tensor]:
        """The weighted sum of every part over the chunk (divided by the normaliser) and its
        gradient with respect to the (n, V) fp32 logits.

        Parts with a closed-form gradient (`per_token_grad`) skip autograd: fewer (n, V)
        temporaries, so larger chunks fit the same memory; the others go through autograd.
        """
        total, grad, by_autograd = s_logits.new_zeros(()), None, []
        for name, (loss, weight) in self.parts.items():
            closed = loss.per_token_grad(s_logits, chunk)
            if closed is None:
                by_autograd.append((name, loss, weight))
                continue
            values, g = closed
            weights = teacher_token_weights(loss.token_weighting, chunk, name)
            if weights is not None:
                values, g = values * weights, g.mul_(weights[:, None])
            part = values.sum() / self.normalizer
            self.values[name] = self.values.get(name, 0.0) + part
            total = total + weight * part
            g = g.mul_(weight / self.normalizer)
            grad = g if grad is None else grad.add_(g)
        if by_autograd:
            with torch.enable_grad():
                leaf = s_logits.detach().requires_grad_(True)
                rest = leaf.new_zeros(())
                for name, loss, weight in by_autograd:
                    per_token = loss.per_token(leaf, chunk)
                    weights = teacher_token_weights(loss.token_weighting, chunk, name)
                    if weights is not None:
                        per_token = per_token * weights
                    part = per_token.sum() / self.normalizer
                    self.values[name] = self.values.get(name, 0.0) + part.detach()
                    rest = rest + weight * part
                (g,) = torch.autograd.grad(rest, leaf)
            total = total + rest.detach()
            grad = g if grad is None else grad.add_(g)
        return total, grad

    @torch.no_grad()
    def add_diagnostics(self, s_logits: Tensor, chunk: TokenChunk) -> None:
        if chunk.teacher_logits is None:
            return
        t_logp = F.log_softmax(chunk.teacher_logits.float(), -1)
        s_logp = F.log_softmax(s_logits, -1)
        agree = (s_logits.argmax(-1) == t_logp.argmax(-1)).sum()
        kl = kl_per_token(t_logp, s_logp).sum()
        self.diag["agree"] = self.diag.get("agree", 0) + agree
        self.diag["kl"] = self.diag.get("kl", 0.0) + kl


class _HeadGrad:
    """A trainable head's gradient, sum_i g_i^T x_i, updated once per block of gathered rows.

    Args:
        grad: (V, H) accumulator, in the head's dtype.
        width: H; rows: how many (g, x) rows a block holds.
    """

    def __init__(self, grad: Tensor, width: int, rows: int) -> None:
        self.grad, self.filled = grad, 0
        self.g = grad.new_empty((rows, grad.shape[0]))
        self.x = grad.new_empty((rows, width))

    def add(self, g: Tensor, x: Tensor) -> None:
        """Gather (n, V) logit gradients and their (n, H) inputs; update when the block is full."""
        if self.filled + len(g) > len(self.g):  # a block holds at least one chunk
            self.flush()
        end = self.filled + len(g)
        self.g[self.filled : end], self.x[self.filled : end] = g, x
        self.filled = end

    def flush(self) -> Tensor:
        if self.filled:
            n, self.filled = self.filled, 0
            self.grad.addmm_(self.g[:n].t(), self.x[:n])
        return self.grad


class _FusedTokenLoss(torch.autograd.Function):
    """inputs (N, H) hidden rows with a (V, H) head, or (N, V) logits rows with no head."""

    @staticmethod
    def forward(ctx, inputs: Tensor, weight: Tensor | None, bias: Tensor | None, job: _Job):
        grad_in = torch.zeros_like(inputs) if ctx.needs_input_grad[0] else None
        grad_w = grad_b = None
        if weight is not None and ctx.needs_input_grad[1]:  # the one unavoidable (V, H) buffer
            size = weight.element_size()
            block = HEAD_GRAD_BYTES.get(size, 2**25) // (job.vocab * size)
            rows = min(len(inputs), max(job.chunk_size, block))
            grad_w = _HeadGrad(torch.zeros_like(weight[: job.vocab]), weight.shape[1], rows)
        if bias is not None and ctx.needs_input_grad[2]:
            grad_b = torch.zeros_like(bias[: job.vocab])
        # Cast once here (under autocast F.linear would copy the whole head for every chunk).
        dtype = job.compute_dtype
        w = None if weight is None else weight[: job.vocab].to(dtype or weight.dtype)
        b = None if bias is None else bias[: job.vocab].to(w.dtype)
        total = inputs.new_zeros((), dtype=torch.float32)
        for start in range(0, inputs.shape[0], job.chunk_size):
            x = inputs[start : start + job.chunk_size]
            chunk = job.chunk(start, start + job.chunk_size)
            with torch.autocast(inputs.device.type, enabled=False):
                raw = x if w is None else F.linear(x.to(w.dtype), w, b)
                s_logits = raw[:, : job.vocab].detach().float()
                del raw
                chunk_total, g = job.chunk_total_and_grad(s_logits, chunk)
            total += chunk_total.detach()
            if job.diagnostics:
                job.add_diagnostics(s_logits, chunk)
            del s_logits
            if g is None:  # no token part: the pass gives only the diagnostics
                continue
            if grad_in is not None:
                if w is None:
                    grad_in[start : start + len(x), : job.vocab] = g
                else:
                    grad_in[start : start + len(x)] = (g.to(w.dtype) @ w).to(grad_in.dtype)
            if grad_w is not None:
                grad_w.add(g, x)
            if grad_b is not None:
                grad_b += g.sum(0).to(grad_b.dtype)
        grad_w = None if grad_w is None else grad_w.flush()
        ctx.grads = (grad_in, grad_w, grad_b, weight, bias)
        return total

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        grad_in, grad_w, grad_b, weight, bias = ctx.grads
        del ctx.grads
        # In place: a second (V, H) buffer for the scaled head gradient would double its memory.
        outs = [None if grad_in is None else grad_in.mul_(grad_output), None, None, None]
        if grad_w is not None:
            outs[1] = _pad_rows(grad_w.mul_(grad_output), weight)
        if grad_b is not None:
            outs[2] = _pad_rows(grad_b.mul_(grad_output), bias)
        return tuple(outs)


def _pad_rows(grad: Tensor, like: Tensor) -> Tensor:
    """A gradient for the first rows of `like` (the shared vocabulary), zero beyond."""
    if grad.shape[0] == like.shape[0]:
        return grad.to(like.dtype)
    full = torch.zeros_like(like)
    full[: grad.shape[0]] = grad
    return full


def scored_rows(labels: Tensor) -> Tensor:
    """Flat indices (into B*T) of the positions whose next label is scored, as a (N,) tensor."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] != -100
    return mask.flatten().nonzero().squeeze(1)


def first_of_run(rows: Tensor) -> int | None:
    """The first of the sorted `rows` when they are one contiguous run (one sequence without
    padding: the long-context case), else None."""
    if len(rows) and int(rows[-1]) - int(rows[0]) + 1 == len(rows):
        return int(rows[0])
    return None


def take_rows(flat: Tensor, rows: Tensor, first: int | None) -> Tensor:
    """flat[rows] of a (B*T, D) tensor: a view when the rows are one contiguous run starting at
    `first` (from `first_of_run`), so their (N, D) copy is never made; else a copy."""
    return flat.index_select(0, rows) if first is None else flat[first : first + len(rows)]


def default_chunk_size(vocab: int, trainable_head: bool = True) -> int:
    """Rows per chunk: a frozen head (QLoRA) affords chunks twice as large, which cost fewer
    passes over the head (measured at T=2048, V=32016: 128 rows 131 MiB, 65 rows 84 MiB)."""
    return max(8, CHUNK_ELEMENTS * (1 if trainable_head else 2) // vocab)


def fused_token_losses(
    out: StepOutputs,
    batch: dict[str, Any],
    parts: Mapping[str, tuple[TokenLoss, float]],
    *,
    vocab: int | None = None,
    chunk_size: int | None = None,
    diagnostics: bool = False,
) -> FusedResult:
    """Every token loss in `parts` ({name: (component, weight)}) in one chunked pass.

    Args:
        out: the student's hidden state and head (or dense logits), and the teacher's signal.
        batch: `labels` (B, T); optional `loss_tokens` (the global normaliser) and `code_mask`.
        vocab: the shared vocabulary of student and teacher (from the tokenizer preflight); the
            logits beyond it are ignored. None: the whole student vocabulary.
        chunk_size: rows per chunk; by default about 8 MiB of fp32 logits.
        diagnostics: also return top-1 agreement and mean KL at T=1 (needs dense teacher logits).
    """
    labels = batch["labels"]
    if not parts and not diagnostics:  # e.g. attention transfer alone
        return FusedResult(labels.new_zeros((), dtype=torch.float32), {}, {})
    rows = scored_rows(labels)
    first = first_of_run(rows)  # one host sync, shared by the student's and teacher's rows
    if out.student_logits is not None or out.student_head is None:
        inputs = take_rows(out.student_logits.flatten(0, 1), rows, first)
        weight = bias = None
        width = inputs.shape[1]
    else:
        inputs = take_rows(out.student_hidden.flatten(0, 1), rows, first)
        weight, bias = out.student_head.weight, getattr(out.student_head, "bias", None)
        width = weight.shape[0]
    vocab = min(vocab or width, width)
    if out.teacher_logits is not None:
        vocab = min(vocab, out.teacher_logits.shape[-1])
    job = _Job(
        parts=parts,
        labels=labels[:, 1:].flatten().index_select(0, _shift(rows, labels.shape[1])),
        teacher=None if out.teacher_logits is None else out.teacher_logits.flatten(0, 1),
        rows=rows,
        sparse=_sparse_rows(out, rows),
        code=_code_rows(batch, rows),
        normalizer=loss_tokens(batch, labels[:, 1:] != -100),
        chunk_size=chunk_size or default_chunk_size(vocab, weight is None or weight.requires_grad),
        vocab=vocab,
        diagnostics=diagnostics,
        first_row=first,
    )
    device = inputs.device.type
    if torch.is_autocast_enabled(device):
        job.compute_dtype = torch.get_autocast_dtype(device)
    check_sparse_parts(job)
    total = _FusedTokenLoss.apply(inputs, weight, bias, job)
    values = {name: job.values.get(name, total.new_zeros(())) for name in parts}
    diag = {}
    if job.diag:
        n = max(len(rows), 1)
        diag = {"top1_agreement": job.diag["agree"] / n, "kl": job.diag["kl"] / n}
    return FusedResult(total, values, diag)


def _shift(rows: Tensor, width: int) -> Tensor:
    """Flat index into labels[:, 1:] (B, T-1) of each row's next label."""
    return (rows // width) * (width - 1) + rows % width


def _sparse_rows(out: StepOutputs, rows: Tensor) -> SparseRows | None:
    sparse = out.teacher_sparse
    if sparse is None or out.teacher_logits is not None:
        return None
    return take_sparse_rows(sparse, rows)


def take_sparse_rows(sparse: Any, rows: Tensor) -> SparseRows:
    """A (B, T, ...) cache batch's targets at the flat `rows` (from `scored_rows`), as the fused
    pass takes them."""

    def take(t: Tensor) -> Tensor:
        return t.flatten(0, 1).index_select(0, rows)

    entropy = None if sparse.entropy is None else take(sparse.entropy)
    return SparseRows(
        take(sparse.ids),
        take(sparse.logp),
        take(sparse.tail_logp),
        sparse.kind,
        sparse.temperature,
        entropy,
    )


def _code_rows(batch: dict[str, Any], rows: Tensor) -> Tensor | None:
    """The code flag of each row's next token."""
    code = batch.get("code_mask")
    if code is None:
        return None
    return code[:, 1:].flatten().index_select(0, _shift(rows, code.shape[1]))


def check_sparse_parts(job: _Job) -> None:
    """A sparse cache fixes the temperature and, when sampled, the divergence: say so plainly."""
    if job.sparse is None:
        return
    for name, (loss, _) in job.parts.items():
        if job.sparse.kind not in loss.sparse_kinds:
            raise ValueError(
                f"loss.components.{name} cannot learn from a '{job.sparse.kind}' logit cache "
                f"(it works with: {', '.join(loss.sparse_kinds)}); use an online teacher, a "
                "top-k cache, or loss.components.kl"
            )
        uses_temperature = "teacher_logits" in loss.requires
        if uses_temperature and abs(loss.temperature - job.sparse.temperature) > 1e-6:
            raise ValueError(
                f"loss.components.{name}.temperature={loss.temperature} but the logit cache was "
                f"captured at temperature {job.sparse.temperature}; set the same temperature or "
                "rebuild the cache with `distill teacher-cache teacher_cache.temperature=...`"
            )
