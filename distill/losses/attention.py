"""Attention-map transfer between mapped student and teacher layers.

Self-attention distribution transfer as in MiniLM (Wang et al. 2020, https://arxiv.org/abs/2002.10957)
and TinyBERT (Jiao et al. 2020, https://arxiv.org/abs/1909.10351): each scored query row of the
student's attention is pulled towards the teacher's row. The models must run with
attn_implementation="eager" (SDPA returns no attention maps).

Head counts may differ: `heads: average` compares the head-averaged maps; `heads: mix` learns, per
layer pair, a mixing of the teacher's heads for each student head (rows of a softmax, so a mixed
row stays a distribution; initialised to the plain average).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from distill.losses.base import as_fp32, register_loss
from distill.losses.layer_map import Pair, needed, pair_key
from distill.losses.layer_pair import LayerPairLoss

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from distill.losses.base import StepOutputs

NAME = "attn_transfer"
HEADS = ("average", "mix")
METRICS = ("kl", "mse")
# Floor of a probability under a log: keeps log(0) (and its NaN gradient) out of the graph while
# leaving every normal fp32 (and bf16) probability as it is.
LOG_FLOOR = torch.finfo(torch.float32).tiny


@register_loss(NAME)
class AttentionTransferLoss(LayerPairLoss):
    """Per scored query row, KL(teacher row || student row) or the squared error of the rows.

    The value is the mean over the active layer pairs of the per-row loss, averaged over heads,
    then over scored query positions (`LayerPairLoss`). Padded keys (attention_mask 0) carry no
    probability: both rows are renormalised without them. The teacher side is detached; gradients
    reach the student and the mixing weights.

    Args:
        layers: "uniform", "last_k" or [[student_layer, teacher_layer], ...] (see `layer_map`).
        last_k: how many last layers `layers=last_k` maps, >= 1.
        heads: "average" (average the heads of each side) or "mix" (learned teacher -> student
            head mixing per pair, created by `prepare`).
        metric: "kl" or "mse" (squared error summed over the keys of a row, so its scale does not
            depend on the sequence length).
    """

    name = NAME
    requires = frozenset({"attentions", "teacher_attentions"})

    def __init__(
        self,
        layers: str | Sequence[Sequence[int]] = "uniform",
        last_k: int = 1,
        heads: str = "average",
        metric: str = "kl",
    ) -> None:
        super().__init__(layers, last_k, heads=(heads, HEADS), metric=(metric, METRICS))
        self.heads = heads
        self.metric = metric
        self.mixing = nn.ParameterDict()  # pair key -> (Hs, Ht) logits, filled by prepare()

    def prepare_pairs(self, student_config: Any, teacher_config: Any, pairs: list[Pair]) -> None:
        """For `heads=mix`, a trainable (Hs, Ht) head mixing per pair."""
        if self.heads != "mix":
            return
        shape = (student_config.num_attention_heads, teacher_config.num_attention_heads)
        old = {k: p for k, p in self.mixing.items() if p.shape == shape}
        # Zero logits: a uniform softmax, so every student head starts from the teacher average.
        self.mixing = nn.ParameterDict(
            {k: old.get(k, nn.Parameter(torch.zeros(shape))) for k in map(pair_key, pairs)}
        )

    def pair_parameters(self) -> Mapping[str, Iterable[nn.Parameter]]:
        return {key: [p] for key, p in self.mixing.items()}

    def sides(self, out: StepOutputs) -> tuple[Sequence[Tensor], Sequence[Tensor]]:
        """Ls (B, Hs, T, T) student and Lt (B, Ht, T, T) teacher maps, rows over keys sum to 1."""
        student = needed(out.student_attentions, "student attentions", NAME, "attentions")
        teacher = needed(out.teacher_attentions, "teacher attentions", NAME, "teacher_attentions")
        return student, teacher

    def pair_loss(self, student: Tensor, teacher: Tensor, pair: Pair, batch: dict) -> Tensor:
        """(B, Hs, T, T) and (B, Ht, T, T) maps -> (B, T-1) loss of query rows [:, :-1];
        `batch["attention_mask"]` (B, T), when present, marks the real keys."""
        s_rows, t_rows = self._rows(student[:, :, :-1], teacher[:, :, :-1].detach(), pair)
        keys = batch.get("attention_mask")
        if keys is not None:
            s_rows, t_rows = _drop_keys(s_rows, keys), _drop_keys(t_rows, keys)
        if self.metric == "kl":
            t_logp, s_logp = (r.clamp_min(LOG_FLOOR).log() for r in (t_rows, s_rows))
            per_row = (t_rows * (t_logp - s_logp)).sum(-1)
        else:
            per_row = (t_rows - s_rows).pow(2).sum(-1)
        return per_row.mean(1)

    def _rows(self, student: Tensor, teacher: Tensor, pair: Pair) -> tuple[Tensor, Tensor]:
        """Student (B, Hs, Q, K) and teacher (B, Ht, Q, K) rows -> fp32 rows with one head count."""
        if self.heads == "average":
            fp32 = torch.float32
            return student.mean(1, keepdim=True, dtype=fp32), teacher.mean(1, True, dtype=fp32)
        key = pair_key(pair)
        shape = (student.shape[1], teacher.shape[1])
        if key not in self.mixing or tuple(self.mixing[key].shape) != shape:
            raise RuntimeError(
                f"loss.components.{NAME}.heads=mix: no {shape[1]} -> {shape[0]} head mixing "
                f"exists for layer pair {list(pair)}: call prepare(student_config, "
                "teacher_config) after the models load and before the optimizer is built (the "
                "trainer does this), so the mixing is trained"
            )
        weights = self.mixing[key].softmax(-1)  # (Hs, Ht), rows sum to 1
        mixed = torch.einsum("st,btqk->bsqk", weights, as_fp32(teacher))
        return as_fp32(student), mixed


def _drop_keys(rows: Tensor, keys: Tensor) -> Tensor:
    """Zero the padded keys of (B, H, Q, K) rows and renormalise; `keys` is (B, K), 1 = real."""
    kept = rows * keys[:, None, None, :].to(rows.dtype)
    return kept / kept.sum(-1, keepdim=True).clamp_min(1e-12)  # a fully padded row stays 0
