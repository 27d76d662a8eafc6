"""The KD losses under test, each as one forward+backward step on the same inputs.

Every method takes student hidden rows (N, H) and the student's lm_head weight (V, H) and leaves
the gradient in `hidden.grad` (and `weight.grad` when the head is trainable). All compute forward
KL(teacher || student) at temperature 1, averaged over the N rows, except `trl_b05` (TRL's default
generalized JSD, beta=0.5) and `torchtune` (cross-entropy to the teacher: KL plus the teacher's
entropy, a constant; `value_offset` removes it before the values are compared).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
METHODS = ("naive", "ours", "trl", "trl_b05", "torchtune", "liger")


@dataclass
class Config:
    """One benchmark case. `teacher_hidden` is the width of the teacher head Liger recomputes."""

    seq: int
    dtype: str
    head: str  # "frozen" | "trainable"
    vocab: int = 32016
    hidden: int = 4096
    teacher_hidden: int = 256
    seed: int = 0

    @property
    def label(self) -> str:
        return f"T={self.seq} {self.dtype} {self.head}"


@dataclass
class Inputs:
    """hidden (N, H) leaf; weight (V, H); teacher_logits (N, V) = teacher_hidden @ teacher_weight.T
    (teacher_hidden (N, Ht), teacher_weight (V, Ht))."""

    hidden: Tensor
    weight: Tensor
    teacher_hidden: Tensor
    teacher_weight: Tensor
    teacher_logits: Tensor

    def clear_grads(self) -> None:
        self.hidden.grad = None
        self.weight.grad = None


def make_inputs(cfg: Config) -> Inputs:
    """Random inputs whose logits have a spread like a trained LM's (std about 2-3 nats)."""
    gen = torch.Generator().manual_seed(cfg.seed)
    dtype = DTYPES[cfg.dtype]
    n, h, v, ht = cfg.seq, cfg.hidden, cfg.vocab, cfg.teacher_hidden
    hidden = torch.randn(n, h, generator=gen).to(dtype).requires_grad_(True)
    weight = (torch.randn(v, h, generator=gen) * (2.0 / h**0.5)).to(dtype)
    weight.requires_grad_(cfg.head == "trainable")
    t_hidden = torch.randn(n, ht, generator=gen).to(dtype)
    t_weight = (torch.randn(v, ht, generator=gen) * (3.0 / ht**0.5)).to(dtype)
    t_logits = t_hidden @ t_weight.t()  # what Liger recomputes inside, bit for bit
    return Inputs(hidden, weight, t_hidden, t_weight, t_logits)


def upcast(x: Inputs) -> Inputs:
    """The same values in fp32: the reference that bf16 cases are checked against."""
    hidden = x.hidden.detach().float().requires_grad_(True)
    weight = x.weight.detach().float().requires_grad_(x.weight.requires_grad)
    tail = (x.teacher_hidden.float(), x.teacher_weight.float(), x.teacher_logits.float())
    return Inputs(hidden, weight, *tail)


def naive(x: Inputs) -> Tensor:
    """Dense: the head in the model's dtype, fp32 log-softmax of both sides, KL, mean over rows."""
    s_logp = F.log_softmax((x.hidden @ x.weight.t()).float(), dim=-1)
    t_logp = F.log_softmax(x.teacher_logits.float(), dim=-1)
    return (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean()


def ours(x: Inputs, chunk_size: int | None = None) -> Tensor:
    """distill's `kl` component through the chunked pass a training step runs
    (`fused_token_losses`): one sequence whose N hidden rows each predict a scored token."""
    from distill.losses.base import StepOutputs
    from distill.losses.chunked import fused_token_losses
    from distill.losses.kl import ForwardKLLoss

    out = StepOutputs(
        student_hidden=x.hidden.unsqueeze(0),
        student_head=SimpleNamespace(weight=x.weight),  # what the pass reads of an lm_head
        teacher_logits=x.teacher_logits.unsqueeze(0),
    )
    # one label longer than the rows: row i predicts label i + 1, so all N rows are scored
    labels = torch.zeros(1, x.hidden.shape[0] + 1, dtype=torch.long)
    parts = {"kl": (ForwardKLLoss(temperature=1.0), 1.0)}
    return fused_token_losses(out, {"labels": labels}, parts, chunk_size=chunk_size).total


def trl(x: Inputs, beta: float = 0.0) -> Tensor:
    """As GKDTrainer.compute_loss calls it: (B, T, V) logits in the model's dtype, labels given
    (so 'batchmean' divides by the scored tokens). beta=0 is KL(teacher || student) in TRL."""
    from trl.experimental.gkd import GKDTrainer

    student = (x.hidden @ x.weight.t()).unsqueeze(0)
    labels = torch.zeros(1, x.hidden.shape[0], dtype=torch.long)
    return GKDTrainer.generalized_jsd_loss(
        student, x.teacher_logits.unsqueeze(0), labels=labels, beta=beta
    )


def torchtune(x: Inputs, chunks: int = 8) -> Tensor:
    """As torchtune's KD recipe does it: the output layer applied to 3-D (B, T/chunks, H) slices
    of the last hidden state (TransformerDecoder.chunked_output), then the chunked loss."""
    from torchtune.modules.loss import ForwardKLWithChunkedOutputLoss

    h3 = x.hidden.unsqueeze(0)
    student = [F.linear(c, x.weight) for c in h3.chunk(chunks, dim=1)]
    teacher = list(x.teacher_logits.unsqueeze(0).chunk(chunks, dim=1))
    labels = torch.zeros(1, x.hidden.shape[0], dtype=torch.long)
    return ForwardKLWithChunkedOutputLoss(chunks)(student, teacher, labels)


def liger(x: Inputs, chunk_size: int = 1024, compiled: bool = False) -> Tensor:
    """Liger's fused linear JSD at beta=0 (forward KL), no hard loss. It takes the teacher's
    hidden rows and head, not its logits, and recomputes the teacher logits chunk by chunk."""
    from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss

    loss = LigerFusedLinearJSDLoss(
        weight_hard_loss=0.0,
        weight_soft_loss=1.0,
        beta=0.0,
        compiled=compiled,
        chunk_size=chunk_size,
    )
    labels = torch.zeros(x.hidden.shape[0], dtype=torch.long)
    return loss(x.hidden, x.weight, x.teacher_hidden, x.teacher_weight, labels)


def value_offset(name: str, x: Inputs) -> float:
    """What to subtract from a method's value before comparing it to naive's KL."""
    if name.split(":")[0] != "torchtune":
        return 0.0
    t_logp = F.log_softmax(x.teacher_logits.float(), dim=-1)
    return float(-(t_logp.exp() * t_logp).sum(-1).mean())


def build(name: str, liger_compiled: bool = False) -> Callable[[Inputs], Tensor]:
    """`name` is a method, optionally with ':<rows>' (chunk size of ours or liger)."""
    base, _, arg = name.partition(":")
    size = int(arg) if arg else None
    if base == "naive":
        return naive
    if base == "ours":
        return lambda x: ours(x, size)
    if base in ("trl", "trl_b05"):
        beta = 0.5 if base == "trl_b05" else 0.0
        return lambda x: trl(x, beta)
    if base == "torchtune":
        return lambda x: torchtune(x, size or 8)
    if base == "liger":
        return lambda x: liger(x, size or 1024, liger_compiled)
    raise ValueError(f"--methods: unknown method '{name}'; use {', '.join(METHODS)} (ours:128...)")


def step(fn: Callable[[Inputs], Tensor], x: Inputs) -> float:
    """One forward+backward; returns the loss value. Gradients land on the inputs."""
    x.clear_grads()
    loss = fn(x)
    loss.backward()
    return float(loss.detach())
