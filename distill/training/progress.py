"""What a training run costs, and a progress bar that says it: steps, loss, tokens/s, time left.

Lightning's own bar counts batches per epoch, and a run bounded by steps shows `Epoch 7/-2`;
:class:`StepProgressBar` counts optimizer steps out of `train.max_steps` instead. :class:`RunCost`
measures tokens per second (the batches' non-padding tokens over the time the training steps
took), the mean optimizer-step time, peak memory (the process's resident set on the CPU, the
allocator's peak on a GPU) and wall time, logs them and summarises them for `metrics.json`.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar


def peak_memory_mib(device: torch.device | None = None) -> float:
    """The peak memory so far: the GPU allocator's on a CUDA device, else this process's RSS."""
    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


class RunCost(L.Callback):
    """Tokens/s, step time, peak memory and wall time of `fit` (see the module docstring)."""

    def __init__(self) -> None:
        self.tokens = 0
        self.busy_s = 0.0
        self.started = 0.0
        self.steps_at_start = 0
        self._batch_start = 0.0
        self.summary: dict[str, float] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()
        self.steps_at_start = trainer.global_step  # a resumed run counts its own steps

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.busy_s += time.perf_counter() - self._batch_start
        self.tokens += int(batch["attention_mask"].sum())
        if self.busy_s > 0:
            rate = self.tokens / self.busy_s
            pl_module.log("train/tokens_per_s", rate, on_step=True, prog_bar=True, logger=True)

    def on_train_end(self, trainer, pl_module) -> None:
        wall = time.perf_counter() - self.started
        steps = max(trainer.global_step - self.steps_at_start, 1)
        self.summary = {
            "train/tokens_per_s": self.tokens / self.busy_s if self.busy_s else 0.0,
            "train/step_s": wall / steps,
            "train/peak_memory_mib": peak_memory_mib(pl_module.device),
            "train/wall_s": wall,
            "train/tokens": float(self.tokens),
        }


class StepProgressBar(TQDMProgressBar):
    """One bar for the whole run: optimizer steps out of `max_steps`, with the loss, tokens/s and
    tqdm's time left."""

    def on_train_start(self, trainer, pl_module) -> None:
        super().on_train_start(trainer, pl_module)
        bar = self.train_progress_bar
        bar.reset(total=trainer.max_steps if trainer.max_steps > 0 else None)
        bar.initial = bar.n = trainer.global_step
        bar.unit = "step"
        bar.set_description("train")

    def on_train_epoch_start(self, trainer, *_: Any) -> None:
        pass  # no bar per epoch: the run's bar goes on

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        bar = self.train_progress_bar
        if bar is None or bar.disable:
            return
        bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        if trainer.global_step != bar.n:
            bar.update(trainer.global_step - bar.n)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pass

    def get_metrics(self, trainer, pl_module) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        rate = metrics.pop("train/tokens_per_s", None)
        if rate is not None:
            metrics["tok/s"] = f"{float(rate):.0f}"
        return metrics
