"""Callbacks: the training-loss record written to metrics.json, and adapter saving."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import torch
from safetensors.torch import save_file
from torch import nn

log = logging.getLogger(__name__)


class LossHistory(L.Callback):
    """Keeps every step's total loss so the run can report where training started and ended."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))

    def state_dict(self) -> dict[str, list[float]]:  # a resumed run reports the whole history
        return {"losses": list(self.losses)}

    def load_state_dict(self, state_dict: dict[str, list[float]]) -> None:
        self.losses = list(state_dict["losses"])

    def summary(self, window: int = 5) -> dict[str, float]:
        """Mean loss of the first and the last `window` steps."""
        if not self.losses:
            return {}
        w = min(window, len(self.losses))
        return {
            "train/loss_first": sum(self.losses[:w]) / w,
            "train/loss_last": sum(self.losses[-w:]) / w,
            "train/steps": len(self.losses),
        }


LOSS_STATE = "loss_state.safetensors"


class AdapterSaver(L.Callback):
    """Saves only what was trained: the adapters (PEFT format), the tokenizer, and the loss's
    own trainable weights (feature projections, head mixing, adaptive weights) with its step.

    Args:
        out_dir: where `adapter_config.json`, the adapter weights and `loss_state.safetensors` go.
        tokenizer: saved beside them, so the folder loads on its own.
    """

    def __init__(self, out_dir: Path, tokenizer) -> None:
        self.out_dir, self.tokenizer = Path(out_dir), tokenizer

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            pl_module.student.save_pretrained(self.out_dir)
            self.tokenizer.save_pretrained(self.out_dir)
            state = loss_state(pl_module.loss)
            if len(state) > 1:  # more than the step: the loss trained weights of its own
                save_file(state, str(self.out_dir / LOSS_STATE))
            log.info("adapters saved to %s", self.out_dir)


def loss_state(loss: nn.Module) -> dict[str, torch.Tensor]:
    """The loss's trainable parameters and its buffers (the schedules' step), detached copies."""
    state = {n: p.detach().contiguous() for n, p in loss.named_parameters() if p.requires_grad}
    state.update({n: b.detach().contiguous() for n, b in loss.named_buffers()})
    return state
