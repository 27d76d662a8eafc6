"""The token losses of a step in one chunked pass that never holds (B, T, V) student logits.

Rows are the scored positions only (prompt and padding are never projected). For each chunk of
rows the student's lm_head is applied, the logits are handed to every active token loss a few rows
at a time (fp32), and the gradient of the weighted sum with respect to those logits, written over
the logits themselves, is turned at once into gradients for the hidden states (and the head, when
it is trainable). The backward pass only scales what the forward pass stored: measured on a CPU
this was as fast as the dense loss, while recomputing each chunk in backward was 23-59% slower.

Two sizes, because the two kinds of work want different ones: a chunk (the head's matmuls) wants
many rows, since each chunk streams the whole (V, H) head and a matmul of few rows runs far below
the CPU's speed (at V=151,936, H=896: 27 rows 2.1x the time per row of 2,048 rows); the loss math
makes several (rows, V) fp32 temporaries, so it runs on sub-chunks of a few rows, and the chunk
costs one (rows, V) buffer (see experiments/performance/kd_loss).
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

# Logits of one chunk, the one (rows, V) buffer of the pass: 48 MiB in fp32, 393 rows of a 32k
# vocabulary, 82 of Qwen's 152k; a frozen head (QLoRA: no (V, H) gradient) affords twice as many.
CHUNK_ELEMENTS = 3 * 2**22
# Logits of one sub-chunk of the loss math (each of its temporaries): 2 MiB in fp32.
SUB_ELEMENTS = 2**19
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
    sub_rows: int
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

    def losses_over(self, logits: Tensor, start: int) -> tuple[Tensor, Tensor | None]:
        """Every part over one chunk of (n, V) logits (in the head's compute dtype), a sub-chunk
        of rows at a time in fp32: the chunk's total, and its gradient, written over `logits`
        (None when no part is active)."""
        chunk_total, has_grad = logits.new_zeros((), dtype=torch.float32), False
        for a in range(0, len(logits), self.sub_rows):
            rows = logits[a : a + self.sub_rows]
            s_logits = rows.float()  # a view of fp32 logits: read before any write below
            chunk = self.chunk(start + a, start + a + len(rows))
            if self.diagnostics:
                self.add_diagnostics(s_logits, chunk)
            total, g = self.chunk_total_and_grad(s_logits, chunk)
            chunk_total += total.detach()
            if g is not None:
                rows.copy_(g)
                has_grad = True
        return chunk_total, logits if has_grad else None

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
    """A trainable head's gradient, sum_i g_i^T x_i, updated once per block of rows.

    Chunks of at least a block update it at once; smaller ones are gathered first, so each update
    passes over the (V, H) accumulator for many rows (a 16-bit accumulator is also rounded fewer
    times).

    Args:
        grad: (V, H) accumulator, in the head's dtype.
        width: H; rows: how many (g, x) rows a block holds.
    """

    def __init__(self, grad: Tensor, width: int, rows: int) -> None:
        self.grad, self.filled, self.rows, self.width = grad, 0, rows, width
        self.g = self.x = None

    def add(self, g: Tensor, x: Tensor) -> None:
        """Add (n, V) logit gradients and their (n, H) inputs."""
        g, x = g.to(self.grad.dtype), x.to(self.grad.dtype)
        if len(g) >= self.rows:
            self.flush()
            self.grad.addmm_(g.t(), x)
            return
        if self.g is None:
            self.g = g.new_empty((self.rows, g.shape[1]))
            self.x = x.new_empty((self.rows, self.width))
        if self.filled + len(g) > self.rows:
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
            rows = max(1, min(len(inputs), block))
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
            with torch.autocast(inputs.device.type, enabled=False):
                if w is None:  # logits rows: the gradient gets its own buffer
                    logits = x[:, : job.vocab].detach().clone()
                else:
                    logits = F.linear(x.detach().to(w.dtype), w, b)
                chunk_total, g = job.losses_over(logits, start)
            total += chunk_total
            if g is None:  # no token part: the pass gives only the diagnostics
                continue
            if grad_in is not None:
                if w is None:
                    grad_in[start : start + len(x), : job.vocab] = g
                else:
                    grad_in[start : start + len(x)] = (g @ w).to(grad_in.dtype)
            if grad_w is not None:
                grad_w.add(g, x)
            if grad_b is not None:
                grad_b += g.sum(0, dtype=grad_b.dtype)
            del logits, g
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
    passes over the head."""
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
        chunk_size: rows per chunk; by default 48 MiB of fp32 logits (96 MiB, frozen head).
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
        sub_rows=max(1, SUB_ELEMENTS // vocab),
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
