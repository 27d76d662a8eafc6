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

from distill.losses.base import as_fp32, register_loss
from distill.losses.layer_map import Pair, layer_outputs, needed, pair_key
from distill.losses.layer_pair import LayerPairLoss

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from distill.losses.base import StepOutputs

NAME = "feature_match"
METRICS = ("mse", "cosine")
PROJECTIONS = ("shared", "per_pair")
SHARED = "shared"


@register_loss(NAME)
class FeatureMatchLoss(LayerPairLoss):
    """Distance between projected student and teacher hidden states, over scored tokens.

    The value is the mean over the active layer pairs of the per-token distance, averaged over
    scored positions (`LayerPairLoss`). The teacher side is detached; gradients reach the student
    and the projections.

    Args:
        layers: "uniform", "last_k" or [[student_layer, teacher_layer], ...] (see `layer_map`).
        last_k: how many last layers `layers=last_k` maps, >= 1.
        metric: "mse" (squared error averaged over the teacher's hidden dimension) or "cosine"
            (1 - cosine similarity).
        projection: "shared" (one Linear for all pairs) or "per_pair"; used only when the widths
            differ, created by `prepare`.
    """

    name = NAME
    requires = frozenset({"hidden_states", "teacher_hidden_states"})

    def __init__(
        self,
        layers: str | Sequence[Sequence[int]] = "uniform",
        last_k: int = 1,
        metric: str = "mse",
        projection: str = SHARED,
    ) -> None:
        super().__init__(
            layers, last_k, metric=(metric, METRICS), projection=(projection, PROJECTIONS)
        )
        self.metric = metric
        self.projection = projection
        self.projections = nn.ModuleDict()  # filled by prepare() when the widths differ

    def prepare_pairs(self, student_config: Any, teacher_config: Any, pairs: list[Pair]) -> None:
        """Student -> teacher projections (trainable) when the hidden sizes differ."""
        s_width, t_width = student_config.hidden_size, teacher_config.hidden_size
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

    def pair_parameters(self) -> Mapping[str, Iterable[nn.Parameter]]:
        if self.projection == SHARED:  # every pair trains the one projection
            return {}
        return {key: list(m.parameters()) for key, m in self.projections.items()}

    def sides(self, out: StepOutputs) -> tuple[Sequence[Tensor], Sequence[Tensor]]:
        """Ls (B, T, Hs) student and Lt (B, T, Ht) teacher hidden states (embeddings dropped)."""
        student = needed(out.student_hidden_states, "student hidden states", NAME, "hidden_states")
        teacher = needed(
            out.teacher_hidden_states, "teacher hidden states", NAME, "teacher_hidden_states"
        )
        return layer_outputs(student), layer_outputs(teacher)

    def pair_loss(self, student: Tensor, teacher: Tensor, pair: Pair, batch: dict) -> Tensor:
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
