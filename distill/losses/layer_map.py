"""Which student layer is compared with which teacher layer, shared by the layer-wise losses.

Layers are numbered from 0 (the first decoder layer) to depth - 1. Hugging Face `hidden_states`
tuples hold the embeddings at index 0 and the output of layer i at index i + 1 (use
`layer_outputs` to drop the embeddings); `attentions` tuples hold layer i at index i.

Three kinds of mapping, chosen by `loss.components.<name>.layers`:
    uniform: every student layer i of Ls, spread evenly over the teacher's Lt layers, last to last:
        teacher layer round((i + 1) * Lt / Ls) - 1 (rounding half up).
    last_k: the `last_k` last student layers with the `last_k` last teacher layers, in order.
    [[s, t], ...]: explicit pairs of (student layer, teacher layer).

A progressive layer curriculum uses only the first `ceil(active_layers * n)` of the n pairs
(at least one), ordered from shallow to deep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

from torch import Tensor

if TYPE_CHECKING:
    from transformers import PretrainedConfig

LAYER_KINDS = ("uniform", "last_k")
Pair = tuple[int, int]
T = TypeVar("T")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class LayerMap:
    """A validated `layers` / `last_k` option; turns two depths into (student, teacher) pairs.

    Args:
        component: the registry name of the loss, for error messages.
        layers: "uniform", "last_k", or a list of [student_layer, teacher_layer] pairs.
        last_k: how many last layers `layers=last_k` maps, >= 1.

    Raises:
        ValueError: naming `loss.components.<component>.layers` or `.last_k` for a bad option.
    """

    def __init__(self, component: str, layers: str | Sequence[Sequence[int]], last_k: int) -> None:
        self.path = f"loss.components.{component}"
        if not _is_int(last_k) or last_k < 1:
            raise ValueError(f"{self.path}.last_k={last_k!r}: use an integer >= 1")
        self.kind, self.explicit = self._parse(layers)
        self.last_k = last_k

    def _parse(self, layers: str | Sequence[Sequence[int]]) -> tuple[str, tuple[Pair, ...]]:
        hint = (
            f"use {' or '.join(LAYER_KINDS)}, or a list of [student, teacher] layer pairs "
            f"(0-based), e.g. {self.path}.layers=[[0,1],[1,3]]"
        )
        if isinstance(layers, str):
            if layers not in LAYER_KINDS:
                raise ValueError(f"{self.path}.layers='{layers}': unknown kind; {hint}")
            return layers, ()
        if not isinstance(layers, Sequence) or len(layers) == 0:
            raise ValueError(f"{self.path}.layers={layers!r}: {hint}")
        pairs = []
        for item in layers:
            ok = isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2
            if not ok or not all(_is_int(v) and v >= 0 for v in item):
                raise ValueError(
                    f"{self.path}.layers: pair {item!r} is not two non-negative layer "
                    f"numbers; {hint}"
                )
            pairs.append((int(item[0]), int(item[1])))
        if len(set(pairs)) != len(pairs):
            raise ValueError(f"{self.path}.layers={pairs}: a pair is listed twice; list each once")
        return "explicit", tuple(sorted(pairs))  # shallow to deep, the curriculum's order

    def pairs(self, student_depth: int, teacher_depth: int) -> list[Pair]:
        """All mapped (student layer, teacher layer) pairs, from shallow to deep.

        Raises:
            ValueError: a layer out of range, naming the option and both depths.
        """
        depths = f"the student has {student_depth} layers, the teacher {teacher_depth}"
        if self.kind == "uniform":
            return uniform_pairs(student_depth, teacher_depth)
        if self.kind == "last_k":
            if self.last_k > min(student_depth, teacher_depth):
                raise ValueError(
                    f"{self.path}.last_k={self.last_k} is more layers than one model has "
                    f"({depths}); use last_k <= {min(student_depth, teacher_depth)}"
                )
            return last_k_pairs(self.last_k, student_depth, teacher_depth)
        for s, t in self.explicit:
            if s >= student_depth or t >= teacher_depth:
                raise ValueError(
                    f"{self.path}.layers: pair [{s}, {t}] is out of range ({depths}; layers are "
                    f"numbered from 0): use student layers < {student_depth} and teacher layers "
                    f"< {teacher_depth}"
                )
        return list(self.explicit)

    def layers(self, student_depth: int, teacher_depth: int) -> tuple[set[int], set[int]]:
        """The (student, teacher) layers of every mapped pair, whatever the curriculum uses now."""
        pairs = self.pairs(student_depth, teacher_depth)
        return {s for s, _ in pairs}, {t for _, t in pairs}


def uniform_pairs(student_depth: int, teacher_depth: int) -> list[Pair]:
    """Student layer i -> teacher layer round((i + 1) * Lt / Ls) - 1, half up, at least 0."""
    # Integer round-half-up of (i + 1) * Lt / Ls: Python's round() would send 0.5 to 0.
    return [
        (i, max(0, (2 * (i + 1) * teacher_depth + student_depth) // (2 * student_depth) - 1))
        for i in range(student_depth)
    ]


def last_k_pairs(k: int, student_depth: int, teacher_depth: int) -> list[Pair]:
    """The k last student layers with the k last teacher layers, in order."""
    return [(student_depth - k + j, teacher_depth - k + j) for j in range(k)]


def active_pairs(pairs: list[Pair], fraction: float) -> list[Pair]:
    """The first ceil(fraction * n) pairs (at least one, at most n): the layer curriculum.

    The tiny tolerance keeps 0.3 * 10 = 3.0000000000000004 at 3 pairs, not 4.
    """
    count = math.ceil(fraction * len(pairs) - 1e-9)
    return pairs[: min(len(pairs), max(1, count))]


def layer_outputs(hidden_states: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    """Drop the embeddings (index 0) from an HF `hidden_states` tuple: index i is layer i."""
    return tuple(hidden_states[1:])


def pair_key(pair: Pair) -> str:
    """The ModuleDict / state_dict key of a per-pair parameter, e.g. "s1_t3"."""
    return f"s{pair[0]}_t{pair[1]}"


def text_config(config: PretrainedConfig) -> PretrainedConfig:
    """The decoder's config (`hidden_size`, `num_hidden_layers`, ...), also for nested configs."""
    get = getattr(config, "get_text_config", None)
    return get() if callable(get) else config


def needed(value: T | None, what: str, component: str, requires: str) -> T:
    """`value`, or a clear error when the step outputs lack what the component declared."""
    if value is None:
        raise ValueError(
            f"loss.components.{component}: the step outputs carry no {what}; the trainer fills "
            f"them when a component declares '{requires}' in `requires` (and, for attentions, "
            "the models use attn_implementation='eager')"
        )
    return value
