"""Resumable checkpoints: where they go, which one `resume` reads, and the state Lightning's own
checkpoint lacks (the RNG states and the position in the epoch's batch order).

A checkpoint holds the trainable weights only (`DistillationModule.on_save_checkpoint`), the
optimizer and LR scheduler, the loops' progress and the loss's `step` buffer (its schedules), so
a killed run resumed from it ends where the uninterrupted run with the same seed ends.
"""

from __future__ import annotations

import logging
import random
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from distill.errors import UserError

log = logging.getLogger(__name__)
CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"


def last_checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / LAST


def checkpoint_callback(run_dir: Path, every_n_steps: int) -> ModelCheckpoint | None:
    """Writes `<run dir>/checkpoints/last.ckpt` every `every_n_steps` optimizer steps (0: off)."""
    if not every_n_steps:
        return None
    return ModelCheckpoint(
        dirpath=Path(run_dir) / CHECKPOINT_DIR,
        every_n_train_steps=every_n_steps,
        save_top_k=0,  # only last.ckpt: a resume point, not a model zoo
        save_last=True,
        save_on_train_epoch_end=False,
    )


def resume_path(resume: Any, run_dir: Path) -> Path | None:
    """The checkpoint that `resume` names: true (this run's last.ckpt), a path, or false.

    `resume=true` without a checkpoint starts afresh (with a warning), so that rerunning a sweep
    with `resume=true` continues the jobs that had started and runs the others.
    """
    if resume is None or resume is False or str(resume).lower() in ("false", "no", ""):
        return None
    if resume is True or str(resume).lower() in ("true", "yes", "last"):
        path = last_checkpoint(run_dir)
        if not path.is_file():
            log.warning("resume=true: no checkpoint at %s yet; starting from step 0", path)
            return None
        return path
    path = Path(str(resume))
    if not path.is_file():
        raise UserError(
            f"resume={resume}: no such checkpoint; give a .ckpt file, or resume=true together "
            "with hydra.run.dir=<the killed run's directory> (hydra.sweep.dir=... for a sweep)"
        )
    return path


class ResumeState(L.Callback):
    """Saves the RNG states, and on resume restores them and where the epoch had got to.

    The RNG states are put back as the first resumed batch starts, so nothing Lightning does
    while restoring can draw from them first.
    """

    def __init__(self) -> None:
        self.pending_rng: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: Any, checkpoint: dict) -> None:
        checkpoint["rng_states"] = rng_states()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.pending_rng is not None:
            set_rng_states(self.pending_rng)
            self.pending_rng = None

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: Any, checkpoint: dict) -> None:
        self.pending_rng = checkpoint.get("rng_states")
        done = epoch_batches_done(checkpoint)
        datamodule = trainer.datamodule
        if done and datamodule is not None and hasattr(datamodule, "resume_batches"):
            datamodule.resume_batches = done  # the sampler skips them; Lightning would replay them
            # Lightning warns that a plain DataLoader cannot resume mid-epoch: ours does.
            warnings.filterwarnings("ignore", message=".*ended before the epoch ended.*")
        log.info(
            "resuming at optimizer step %d (epoch %d, %d batch(es) into it)",
            checkpoint.get("global_step", 0),
            checkpoint.get("epoch", 0),
            done,
        )


def epoch_batches_done(checkpoint: dict) -> int:
    """Training batches of the current epoch that the checkpoint had trained on, on this rank.

    `processed`, not `completed`: a checkpoint written in `on_train_batch_end` (ModelCheckpoint's
    every_n_train_steps) has not yet counted its own batch as completed.
    """
    loop = checkpoint.get("loops", {}).get("fit_loop", {})
    progress = loop.get("epoch_loop.batch_progress", {}).get("current", {})
    return int(progress.get("processed", 0))


def rng_states() -> dict[str, Any]:
    """torch (CPU and CUDA), Python and NumPy RNG states, in types that a weights-only
    `torch.load` (Lightning's default) accepts: tensors, ints, strings and tuples."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states` captured."""
    torch.set_rng_state(states["torch"])
    random.setstate(states["python"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
