"""Hidden-state matching between mapped student and teacher layers.

FitNets (Romero et al. 2015, https://arxiv.org/abs/1412.6550) and TinyBERT (Jiao et al. 2020,
https://arxiv.org/abs/1909.10351): the student's intermediate representations are pulled towards
the teacher's, through a learned linear projection when the widths differ.

The projection is shared by all mapped pairs by default (`projection: shared`, as TinyBERT's single
W_h): its size does not grow with the number of pairs, which matters at scale (a 4096 -> 8192
projection is 34M fp32 parameters plus their Adam state; one per layer of a 32-layer uniform map
would be 1.1B), and every pair trains it from the first step of a layer curriculum on.
`projection: per_pair` gives each pair its own basis, for maps of a few layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch.nn.functional as F
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
    layer_outputs,
    needed,
    pair_key,
    text_config,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PretrainedConfig

NAME = "feature_match"
METRICS = ("mse", "cosine")
PROJECTIONS = ("shared", "per_pair")
SHARED = "shared"


@register_loss(NAME)
class FeatureMatchLoss(DistillLoss):
    """Distance between projected student and teacher hidden states, over scored tokens.

    The value is the mean over the active layer pairs of the per-token distance, averaged over
    scored positions with `token_mean` (the hidden state at position t is scored when label t+1
    is). The teacher side is detached; gradients reach the student and the projections.

    Args:
        layers: "uniform", "last_k" or [[student_layer, teacher_layer], ...] (see `layer_map`).
        last_k: how many last layers `layers=last_k` maps, >= 1.
        metric: "mse" (squared error averaged over the teacher's hidden dimension) or "cosine"
            (1 - cosine similarity).
        projection: "shared" (one Linear for all pairs) or "per_pair"; used only when the widths
            differ, created by `prepare`.

    Attributes:
        active_layers: fraction of the mapped pairs in use (shallow first), set by the composite's
            layer curriculum; 1.0 uses all.
    """

    requires = frozenset({"hidden_states", "teacher_hidden_states"})
    # A class attribute too, so the config check sees that `layer_schedule` applies here.
    active_layers: float = 1.0

    def __init__(
        self,
        layers: str | Sequence[Sequence[int]] = "uniform",
        last_k: int = 1,
        metric: str = "mse",
        projection: str = SHARED,
    ) -> None:
        super().__init__()
        for arg, value, allowed in (
            ("metric", metric, METRICS),
            ("projection", projection, PROJECTIONS),
        ):
            if value not in allowed:
                raise ValueError(
                    f"loss.components.{NAME}.{arg}={value!r}: use one of {', '.join(allowed)}"
                )
        self.layer_map = LayerMap(NAME, layers, last_k)
        self.metric = metric
        self.projection = projection
        self.projections = nn.ModuleDict()  # filled by prepare() when the widths differ

    def prepare(
        self, student_config: PretrainedConfig, teacher_config: PretrainedConfig | None
    ) -> None:
        """Create the student -> teacher projections (trainable) when the hidden sizes differ.

        Call after the models load and before the optimizer is built. Also checks the layer map
        against both depths. Existing projections of the right shape are kept, so a second call
        (e.g. before loading a checkpoint) does not reset them.

        Args:
            student_config / teacher_config: HF configs with `hidden_size` and `num_hidden_layers`.
        """
        if teacher_config is None:
            raise ValueError(f"loss.components.{NAME} needs a white-box teacher (teacher=hf ...)")
        s_cfg, t_cfg = text_config(student_config), text_config(teacher_config)
        pairs = self.layer_map.pairs(s_cfg.num_hidden_layers, t_cfg.num_hidden_layers)
        s_width, t_width = s_cfg.hidden_size, t_cfg.hidden_size
        if s_width == t_width:
            self.projections = nn.ModuleDict()
            return
        keys = [SHARED] if self.projection == SHARED else [pair_key(p) for p in pairs]
        kept = {
            k: m
            for k, m in self.projections.items()
            if k in keys and (m.in_features, m.out_features) == (s_width, t_width)
        }
        self.projections = nn.ModuleDict(
            {k: kept.get(k) or nn.Linear(s_width, t_width) for k in keys}
        )

    def layers_used(self, student_depth: int, teacher_depth: int) -> tuple[set[int], set[int]]:
        return self.layer_map.layers(student_depth, teacher_depth)

    def forward(self, out: StepOutputs, batch: dict[str, Any]) -> Tensor:
        """Mean over active pairs of the token-averaged distance.

        Args:
            out: `student_hidden_states` (embeddings + Ls tensors of (B, T, Hs)) and
                `teacher_hidden_states` (embeddings + Lt tensors of (B, T, Ht)).
            batch: with (B, T) `labels`.

        Returns:
            A 0-d fp32 tensor.
        """
        student = layer_outputs(
            needed(out.student_hidden_states, "student hidden states", NAME, "hidden_states")
        )
        teacher = layer_outputs(
            needed(
                out.teacher_hidden_states, "teacher hidden states", NAME, "teacher_hidden_states"
            )
        )
        pairs = active_pairs(self.layer_map.pairs(len(student), len(teacher)), self.active_layers)
        mask = batch["labels"][:, 1:] != IGNORE_INDEX
        total = sum(
            token_mean(self._distance(student[s], teacher[t], (s, t)), mask, batch)
            for s, t in pairs
        )
        return total / len(pairs) + self._unused_projections(pairs)

    def _distance(self, student: Tensor, teacher: Tensor, pair: Pair) -> Tensor:
        """(B, T, Hs) and (B, T, Ht) hidden states -> (B, T-1) distances at positions [:, :-1]."""
        projected = self._project(as_fp32(student[:, :-1]), teacher.shape[-1], pair)
        target = as_fp32(teacher[:, :-1]).detach()
        if self.metric == "mse":
            return (projected - target).pow(2).mean(-1)
        return 1.0 - F.cosine_similarity(projected, target, dim=-1, eps=1e-8)

    def _project(self, student: Tensor, t_width: int, pair: Pair) -> Tensor:
        """(B, T-1, Hs) -> (B, T-1, Ht) through the pair's projection; identity at equal widths."""
        s_width = student.shape[-1]
        if s_width == t_width and not self.projections:
            return student
        key = SHARED if self.projection == SHARED else pair_key(pair)
        proj = self.projections[key] if key in self.projections else None
        if proj is None or (proj.in_features, proj.out_features) != (s_width, t_width):
            raise RuntimeError(
                f"loss.components.{NAME}: student width {s_width} != teacher width {t_width} and "
                f"no {s_width} -> {t_width} projection exists for layer pair {list(pair)}: call "
                "prepare(student_config, teacher_config) after the models load and before the "
                "optimizer is built (the trainer does this), so the projection is trained"
            )
        return proj(student)

    def _unused_projections(self, pairs: list[Pair]) -> Tensor | float:
        """0 times the per-pair projections outside the curriculum, so DDP sees every parameter."""
        if self.projection == SHARED or not self.projections:
            return 0.0
        used = {pair_key(p) for p in pairs}
        rest = [
            p.sum() for k, m in self.projections.items() if k not in used for p in m.parameters()
        ]
        return 0.0 * sum(rest) if rest else 0.0
