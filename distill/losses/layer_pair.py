"""The skeleton the layer-wise losses share: student and teacher layers paired by a layer map, a
curriculum over the pairs, per-pair trainable parts, and a mean over the scored positions.

A layer-pair loss says which outputs it compares (`sides`), what one pair costs per position
(`pair_loss`), and what it trains per pair (`prepare_pairs`, `pair_parameters`); this base does
the rest the same way for all: attention transfer and feature matching are built on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from torch import Tensor, nn

from distill.losses.base import IGNORE_INDEX, DistillLoss, StepOutputs, token_mean
from distill.losses.layer_map import LayerMap, Pair, active_pairs, pair_key, text_config


class LayerPairLoss(DistillLoss):
    """Mean over the active layer pairs of a per-position loss, averaged over scored positions
    with `token_mean` (position t is scored when label t+1 is).

    Args:
        layers: "uniform", "last_k" or [[student_layer, teacher_layer], ...] (see `layer_map`).
        last_k: how many last layers `layers=last_k` maps, >= 1.
        choices: the component's other string arguments, each `(value, allowed values)`; a value
            outside its list is a ValueError naming `loss.components.<name>.<arg>`.

    Attributes:
        active_layers: fraction of the mapped pairs in use (shallow first), set by the composite's
            layer curriculum; 1.0 uses all. A class attribute too, so the config check sees that
            `layer_schedule` applies to the component.
    """

    name: ClassVar[str]  # the registry name, for messages
    active_layers: float = 1.0

    def __init__(
        self,
        layers: str | Sequence[Sequence[int]],
        last_k: int,
        **choices: tuple[str, Sequence[str]],
    ) -> None:
        super().__init__()
        for arg, (value, allowed) in choices.items():
            if value not in allowed:
                raise ValueError(
                    f"loss.components.{self.name}.{arg}={value!r}: use one of {', '.join(allowed)}"
                )
        self.layer_map = LayerMap(self.name, layers, last_k)

    def prepare(self, student_config: Any, teacher_config: Any) -> None:
        """Check the layer map against both depths and create the per-pair trainable parts.

        Call after the models load and before the optimizer is built; parts that already exist
        with the right shape are kept, so a second call does not reset them.
        """
        if teacher_config is None:
            raise ValueError(
                f"loss.components.{self.name} needs a white-box teacher (teacher=hf ...)"
            )
        s_cfg, t_cfg = text_config(student_config), text_config(teacher_config)
        pairs = self.layer_map.pairs(s_cfg.num_hidden_layers, t_cfg.num_hidden_layers)
        self.prepare_pairs(s_cfg, t_cfg, pairs)

    def layers_used(self, student_depth: int, teacher_depth: int) -> tuple[set[int], set[int]]:
        return self.layer_map.layers(student_depth, teacher_depth)

    def forward(self, out: StepOutputs, batch: dict[str, Any]) -> Tensor:
        """The mean over the active pairs of the position-averaged pair loss: a 0-d fp32 tensor.

        Args:
            out: the layer outputs `sides` reads.
            batch: (B, T) `labels`, and what `pair_loss` reads (e.g. `attention_mask`).
        """
        student, teacher = self.sides(out)
        pairs = active_pairs(self.layer_map.pairs(len(student), len(teacher)), self.active_layers)
        scored = batch["labels"][:, 1:] != IGNORE_INDEX
        total = sum(
            token_mean(self.pair_loss(student[s], teacher[t], (s, t), batch), scored, batch)
            for s, t in pairs
        )
        return total / len(pairs) + self._unused(pairs)

    def sides(self, out: StepOutputs) -> tuple[Sequence[Tensor], Sequence[Tensor]]:
        """(student, teacher) per-layer outputs, indexed by decoder layer."""
        raise NotImplementedError

    def pair_loss(self, student: Tensor, teacher: Tensor, pair: Pair, batch: dict) -> Tensor:
        """One pair's (B, T-1) loss at positions [:, :-1]; the teacher side is detached here."""
        raise NotImplementedError

    def prepare_pairs(self, student_config: Any, teacher_config: Any, pairs: list[Pair]) -> None:
        """Create what the pairs train (projections, head mixings); nothing by default."""

    def pair_parameters(self) -> Mapping[str, Iterable[nn.Parameter]]:
        """Trainable parameters that belong to one pair, by `pair_key`; none by default."""
        return {}

    def _unused(self, pairs: list[Pair]) -> Tensor | float:
        """0 times the parameters of pairs outside the curriculum, so DDP sees every parameter."""
        used = {pair_key(p) for p in pairs}
        rest = [
            p.sum()
            for key, params in self.pair_parameters().items()
            if key not in used
            for p in params
        ]
        return 0.0 * sum(rest) if rest else 0.0
