"""The hidden states and attention maps of chosen decoder layers only, recorded by forward hooks.

`output_hidden_states=True` and `output_attentions=True` keep every layer's tensors until the loss
has run, while the layer-wise losses read only their mapped layers. At CodeLlama-7B's shape and
T=2048 the 32 layers' bf16 attention maps are 8 GiB per sequence, and a 34B teacher's 48 layers
of hidden states 1.5 GiB (experiments/performance/layer_outputs/). Recording just the mapped
layers keeps the others free as soon as the next layer has used them.

The tuples keep Hugging Face's layout, `None` where nothing was recorded, so a loss indexes them
as it would the full ones: `hidden_states[0]` the embeddings (never recorded), `[i + 1]` the output
of layer i (of the last layer, after the final norm, as Hugging Face returns it); `attentions[i]`
the maps of layer i.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle


def can_record(decoder: nn.Module) -> bool:
    """Whether `decoder` has the `layers` and final `norm` the hooks attach to (Llama, Qwen,
    Mistral, Gemma...); other models return every layer through the `output_*` flags."""
    return isinstance(getattr(decoder, "layers", None), nn.ModuleList) and hasattr(decoder, "norm")


class LayerRecording:
    """What the hooks of `record_layers` kept, as Hugging Face-shaped tuples."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.hidden: dict[int, Tensor] = {}
        self.attn: dict[int, Tensor] = {}

    def hidden_states(self) -> tuple[Tensor | None, ...]:
        """Length depth + 1: index i + 1 is layer i's output where recorded, else None."""
        return (None, *(self.hidden.get(i) for i in range(self.depth)))

    def attentions(self) -> tuple[Tensor | None, ...]:
        """Length depth: index i is layer i's (B, heads, T, T) maps where recorded, else None."""
        return tuple(self.attn.get(i) for i in range(self.depth))


@contextmanager
def record_layers(
    decoder: nn.Module, hidden: Collection[int] = (), attn: Collection[int] = ()
) -> Iterator[LayerRecording]:
    """Record, during the forward passes inside the block, the outputs of layers `hidden` and the
    attention maps of layers `attn` of `decoder` (its `layers`, numbered from 0).

    The hooks are removed on leaving the block, so a gradient-checkpointed layer recomputed in the
    backward pass records nothing twice.

    Raises:
        ValueError: a layer's attention returned no maps (the model does not run eager attention).
    """
    layers = decoder.layers
    recording = LayerRecording(len(layers))
    last = len(layers) - 1

    def keep_hidden(index: int) -> Any:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            recording.hidden[index] = output[0] if isinstance(output, tuple) else output

        return hook

    def keep_attn(index: int) -> Any:
        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            maps = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if maps is None:
                raise ValueError(
                    f"layer {index}'s attention returned no maps: the attention losses need the "
                    "models loaded with attn_implementation='eager' (the trainer does this when a "
                    "component requires attentions)"
                )
            recording.attn[index] = maps

        return hook

    handles: list[RemovableHandle] = []
    try:
        for i in sorted(set(hidden)):
            # Hugging Face returns the last layer's output after the final norm
            module = decoder.norm if i == last else layers[i]
            handles.append(module.register_forward_hook(keep_hidden(i)))
        for i in sorted(set(attn)):
            handles.append(layers[i].self_attn.register_forward_hook(keep_attn(i)))
        yield recording
    finally:
        for handle in handles:
            handle.remove()
