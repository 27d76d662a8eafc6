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

from distill.losses.base import (
    IGNORE_INDEX,
    DistillLoss,
    StepOutputs,
    as_fp32,
    register_loss,
    token_mean,
)
from distill.losses.layer_map import (
    LayerMap,
    Pair,
    active_pairs,
    needed,
    pair_key,
    text_config,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PretrainedConfig

NAME = "attn_transfer"
HEADS = ("average", "mix")
METRICS = ("kl", "mse")
# Floor of a probability under a log: keeps log(0) (and its NaN gradient) out of the graph while
# leaving every normal fp32 (and bf16) probability as it is.
LOG_FLOOR = torch.finfo(torch.float32).tiny


@register_loss(NAME)
class AttentionTransferLoss(DistillLoss):
    """Per scored query row, KL(teacher row || student row) or the squared error of the rows.

    The value is the mean over the active layer pairs of the per-row loss, averaged over heads,
    then over scored query positions with `token_mean` (query t is scored when label t+1 is).
    Padded keys (attention_mask 0) carry no probability: both rows are renormalised without them.
    The teacher side is detached; gradients reach the student and the mixing weights.

    Args:
        layers: "uniform", "last_k" or [[student_layer, teacher_layer], ...] (see `layer_map`).
        last_k: how many last layers `layers=last_k` maps, >= 1.
        heads: "average" (average the heads of each side) or "mix" (learned teacher -> student
            head mixing per pair, created by `prepare`).
        metric: "kl" or "mse" (squared error summed over the keys of a row, so its scale does not
            depend on the sequence length).

    Attributes:
        active_layers: fraction of the mapped pairs in use (shallow first), set by the composite's
            layer curriculum; 1.0 uses all.
    """

    requires = frozenset({"attentions", "teacher_attentions"})
    # A class attribute too, so the config check sees that `layer_schedule` applies here.
    active_layers: float = 1.0

    def __init__(
        self,
        layers: str | Sequence[Sequence[int]] = "uniform",
        last_k: int = 1,
        heads: str = "average",
        metric: str = "kl",
    ) -> None:
        super().__init__()
        for arg, value, allowed in (("heads", heads, HEADS), ("metric", metric, METRICS)):
            if value not in allowed:
                raise ValueError(
                    f"loss.components.{NAME}.{arg}={value!r}: use one of {', '.join(allowed)}"
                )
        self.layer_map = LayerMap(NAME, layers, last_k)
        self.heads = heads
        self.metric = metric
        self.mixing = nn.ParameterDict()  # pair key -> (Hs, Ht) logits, filled by prepare()

    def prepare(
        self, student_config: PretrainedConfig, teacher_config: PretrainedConfig | None
    ) -> None:
        """Create the per-pair head mixing (trainable) for `heads=mix`; check the layer map.

        Call after the models load and before the optimizer is built. Existing mixing weights of
        the right shape are kept, so a second call does not reset them.

        Args:
            student_config / teacher_config: HF configs with `num_attention_heads` and
                `num_hidden_layers`.
        """
        if teacher_config is None:
            raise ValueError(f"loss.components.{NAME} needs a white-box teacher (teacher=hf ...)")
        s_cfg, t_cfg = text_config(student_config), text_config(teacher_config)
        pairs = self.layer_map.pairs(s_cfg.num_hidden_layers, t_cfg.num_hidden_layers)
        if self.heads != "mix":
            return
        shape = (s_cfg.num_attention_heads, t_cfg.num_attention_heads)
        old = {k: p for k, p in self.mixing.items() if p.shape == shape}
        # Zero logits: a uniform softmax, so every student head starts from the teacher average.
        self.mixing = nn.ParameterDict(
            {k: old.get(k, nn.Parameter(torch.zeros(shape))) for k in map(pair_key, pairs)}
        )

    def layers_used(self, student_depth: int, teacher_depth: int) -> tuple[set[int], set[int]]:
        return self.layer_map.layers(student_depth, teacher_depth)

    def forward(self, out: StepOutputs, batch: dict[str, Any]) -> Tensor:
        """Mean over active pairs of the row loss averaged over heads and scored queries.

        Args:
            out: `student_attentions` (Ls tensors of (B, Hs, T, T)) and `teacher_attentions`
                (Lt tensors of (B, Ht, T, T)), rows over keys summing to 1.
            batch: (B, T) `labels`; (B, T) `attention_mask` when present marks the real keys.

        Returns:
            A 0-d fp32 tensor.
        """
        student = needed(out.student_attentions, "student attentions", NAME, "attentions")
        teacher = needed(out.teacher_attentions, "teacher attentions", NAME, "teacher_attentions")
        pairs = active_pairs(self.layer_map.pairs(len(student), len(teacher)), self.active_layers)
        queries = batch["labels"][:, 1:] != IGNORE_INDEX
        keys = batch.get("attention_mask")
        total = sum(
            token_mean(self._row_loss(student[s], teacher[t], (s, t), keys), queries, batch)
            for s, t in pairs
        )
        return total / len(pairs) + self._unused_mixing(pairs)

    def _row_loss(
        self, student: Tensor, teacher: Tensor, pair: Pair, keys: Tensor | None
    ) -> Tensor:
        """(B, Hs, T, T) and (B, Ht, T, T) maps -> (B, T-1) loss of query rows [:, :-1]."""
        s_rows, t_rows = self._rows(student[:, :, :-1], teacher[:, :, :-1].detach(), pair)
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

    def _unused_mixing(self, pairs: list[Pair]) -> Tensor | float:
        """0 times the mixing of pairs outside the curriculum, so DDP sees every parameter."""
        used = {pair_key(p) for p in pairs}
        rest = [p.sum() for k, p in self.mixing.items() if k not in used]
        return 0.0 * sum(rest) if rest else 0.0


def _drop_keys(rows: Tensor, keys: Tensor) -> Tensor:
    """Zero the padded keys of (B, H, Q, K) rows and renormalise; `keys` is (B, K), 1 = real."""
    kept = rows * keys[:, None, None, :].to(rows.dtype)
    return kept / kept.sum(-1, keepdim=True).clamp_min(1e-12)  # a fully padded row stays 0
