"""Callbacks: the training-loss record written to metrics.json, and adapter saving."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L

log = logging.getLogger(__name__)


class LossHistory(L.Callback):
    """Keeps every step's total loss so the run can report where training started and ended."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))

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


class AdapterSaver(L.Callback):
    """Saves only the trainable adapters (PEFT format) and the tokenizer when training ends.

    Args:
        out_dir: where `adapter_config.json` and the adapter weights go.
        tokenizer: saved beside them, so the folder loads on its own.
    """

    def __init__(self, out_dir: Path, tokenizer) -> None:
        self.out_dir, self.tokenizer = Path(out_dir), tokenizer

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            pl_module.student.save_pretrained(self.out_dir)
            self.tokenizer.save_pretrained(self.out_dir)
            log.info("adapters saved to %s", self.out_dir)
