"""Our arms: the real `distill train` path (config compose -> build_training -> Trainer.fit).

Nothing of the step is re-implemented here: a Lightning callback and forward hooks only read the
clock around `DistillationModule.training_step`'s parts (teacher forward, student decoder forward,
the loss, backward, optimizer step).

    python arm_ours.py SPEC.json
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import lightning as L
from common import PhaseTimer, Spec, StepClock, peak_rss_mib, report, setup_process

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


def compose_cfg(overrides: list[str], stage: str = "train"):
    """`conf/<stage>.yaml` composed with `overrides`, as `distill <stage> ...` would."""
    from hydra import compose, initialize_config_dir

    from distill.cli import register_hydra

    register_hydra()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=stage, overrides=overrides)


def base_overrides(spec: Spec) -> list[str]:
    """The settings every arm shares, as overrides of our config (then the arm's own)."""
    return [
        f"data.dataset={Path(spec.work, 'dataset.jsonl')}",
        f"data.max_length={spec.max_length}",
        f"data.batch_size={spec.batch_size}",
        f"train.max_steps={spec.warmup + spec.steps}",
        f"train.optimizer.lr={spec.lr}",
        "train.val_every_n_steps=100000",  # no validation inside the timed steps
        "train.checkpoint_every_n_steps=0",  # nor checkpoint writes
        f"hardware.threads={spec.threads}",
        f"seed={spec.seed}",
        *spec.overrides,
    ]


class StepTimes(L.Callback):
    """Times each batch, and its backward and optimizer phases, from Lightning's hooks.

    With gradient accumulation a batch is a micro-batch: the optimizer steps done so far
    (`global_step`) decide whether it is timed, so warm-up is counted in optimizer steps.
    """

    def __init__(self, clock: StepClock, timer: PhaseTimer) -> None:
        self.clock, self.timer, self.step = clock, timer, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.step = trainer.global_step
        self.timer.active = self.step >= self.clock.warmup
        self.clock.begin(self.step, int(batch["attention_mask"].sum()))

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self.timer.start("backward")

    def on_after_backward(self, trainer, pl_module) -> None:
        self.timer.stop("backward")

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.timer.start("optimizer")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.timer.stop("optimizer")
        self.clock.end(self.step)


def attach_timers(setup, clock: StepClock, timer: PhaseTimer) -> None:
    """Forward hooks on the teacher, the student's decoder and the loss; the step callback."""
    from common import time_module

    from distill.training.module import split_head

    module = setup.module
    if module.teacher is not None:
        time_module(module.teacher, "teacher_fwd", timer)
    time_module(split_head(module.student)[0], "student_fwd", timer)
    time_module(module.loss, "loss", timer)
    setup.trainer.callbacks.append(StepTimes(clock, timer))


def main(path: str) -> None:
    spec = Spec.load(path)
    setup_process(spec)
    from distill.hardware import resolve_precision
    from distill.training.app import build_training

    cfg = compose_cfg(base_overrides(spec))
    with tempfile.TemporaryDirectory(prefix="train-step-") as run_dir:
        setup = build_training(cfg, Path(run_dir))
        loaded_rss = peak_rss_mib()
        clock, timer = StepClock(spec.warmup), PhaseTimer()
        attach_timers(setup, clock, timer)
        setup.trainer.fit(setup.module, datamodule=setup.datamodule)
    extra = {"precision": resolve_precision(cfg.hardware), "load_peak_rss_mib": loaded_rss}
    report(spec, clock, timer, extra)


if __name__ == "__main__":
    main(sys.argv[1])
