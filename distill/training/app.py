"""The train stage: build the pieces from config, fit, save adapters, report."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from distill.data.datamodule import DistillDataModule
from distill.hardware import trainer_kwargs
from distill.losses import build_loss, load_plugins
from distill.models import load_student, load_teacher, load_tokenizer
from distill.runs import adapters_dir, dataset_path, update_metrics
from distill.training.callbacks import AdapterSaver, LossHistory
from distill.training.module import DistillationModule

log = logging.getLogger(__name__)


@dataclass
class TrainingSetup:
    """Everything `fit` needs, built once so the pipeline can score models before and after."""

    module: DistillationModule
    datamodule: DistillDataModule
    trainer: L.Trainer
    history: LossHistory


def build_logger(cfg: DictConfig, run_dir: Path) -> Any:
    """The third-party logger from `logger._target_`, writing under the run directory."""
    if not cfg.get("logger"):
        return False
    return instantiate(cfg.logger, save_dir=str(run_dir))


def build_training(cfg: DictConfig, run_dir: Path) -> TrainingSetup:
    """Tokenizer, data, loss, teacher, student, module and trainer, in that order."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    load_plugins(list(cfg.plugins))
    loss = build_loss(cfg.loss.components)
    tokenizer = load_tokenizer(cfg.student.path)
    datamodule = DistillDataModule(
        dataset_path(cfg, run_dir),
        tokenizer,
        max_length=cfg.data.max_length,
        batch_size=cfg.data.batch_size,
        val_fraction=cfg.data.val_fraction,
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
    )
    datamodule.setup("fit")  # fail on a bad dataset before any weights load
    needs_attn = bool({"attentions", "teacher_attentions"} & loss.requires)
    attn = "eager" if needs_attn else "sdpa"
    # A white-box teacher is loaded even for `loss=ce`: it scores held-out top-1 agreement.
    teacher = load_teacher(cfg.teacher, attn) if cfg.teacher.kind == "hf" else None
    student = load_student(cfg.student, attn)
    scheduler = instantiate(cfg.train.scheduler) if cfg.train.scheduler else None
    module = DistillationModule(student, teacher, loss, instantiate(cfg.train.optimizer), scheduler)
    history = LossHistory()
    trainer = L.Trainer(
        **trainer_kwargs(cfg.hardware),
        max_steps=cfg.train.max_steps,
        val_check_interval=cfg.train.val_every_n_steps,
        check_val_every_n_epoch=None,
        log_every_n_steps=cfg.train.log_every_n_steps,
        gradient_clip_val=cfg.train.gradient_clip_val,
        num_sanity_val_steps=0,
        enable_checkpointing=False,
        logger=build_logger(cfg, run_dir),
        callbacks=[history, AdapterSaver(adapters_dir(run_dir), tokenizer)],
        default_root_dir=str(run_dir),
    )
    return TrainingSetup(module, datamodule, trainer, history)


def fit(setup: TrainingSetup, run_dir: Path) -> dict[str, Any]:
    """Train, then record the loss summary and final validation metrics in metrics.json."""
    setup.trainer.fit(setup.module, datamodule=setup.datamodule)
    metrics = dict(setup.history.summary())
    metrics.update(
        {k: float(v) for k, v in setup.trainer.callback_metrics.items() if k.startswith("val/")}
    )
    return update_metrics(run_dir, metrics)


def run_train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The `distill train` stage."""
    return fit(build_training(cfg, run_dir), run_dir)
