"""The train stage: build the pieces from config, fit, save adapters, report."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from transformers import AutoConfig

from distill.data.batching.datamodule import DistillDataModule
from distill.data.cache.logit_cache import LogitCache, expected_manifest
from distill.errors import UserError
from distill.hardware import batch_split, inference_device, trainer_kwargs
from distill.losses import build_loss, load_plugins
from distill.losses.schedules import build_schedule
from distill.models import (
    load_student,
    load_student_tokenizer,
    load_teacher,
    load_teacher_tokenizer,
)
from distill.models.preflight import check_tokenizer_pair
from distill.models.sources import resolve_model_dir
from distill.runs import adapters_dir, dataset_path, update_metrics
from distill.teachers import gives_logits
from distill.tracking import tidy_third_party_logs
from distill.training.callbacks import AdapterSaver, LossHistory
from distill.training.checkpoints import ResumeState, checkpoint_callback, resume_path
from distill.training.module import DistillationModule
from distill.training.on_policy import OnPolicy
from distill.training.progress import RunCost, StepProgressBar

log = logging.getLogger(__name__)


@dataclass
class TrainingSetup:
    """Everything `fit` needs, built once so the pipeline can score models before and after."""

    module: DistillationModule
    datamodule: DistillDataModule
    trainer: L.Trainer
    history: LossHistory
    cost: RunCost
    ckpt_path: Path | None = None


def build_logger(cfg: DictConfig, run_dir: Path) -> Any:
    """The third-party logger from `logger._target_`, writing under the run directory.

    A W&B logger attaches to the run `distill.tracking.start_run` opened for the job.
    """
    if not cfg.get("logger"):
        return False
    return instantiate(cfg.logger, save_dir=str(run_dir))


def build_trainer(cfg: DictConfig, run_dir: Path, callbacks: list[L.Callback]) -> L.Trainer:
    """The Trainer: hardware preset, step budget, resumable checkpoints, logger."""
    tidy_third_party_logs()  # Lightning is imported by now: its own handler can go
    every = cfg.train.checkpoint_every_n_steps
    saver = checkpoint_callback(run_dir, cfg.train.val_every_n_steps if every is None else every)
    return L.Trainer(
        **trainer_kwargs(cfg.hardware, cfg.data.batch_size),
        max_steps=cfg.train.max_steps,
        val_check_interval=cfg.train.val_every_n_steps,
        check_val_every_n_epoch=None,
        log_every_n_steps=cfg.train.log_every_n_steps,
        gradient_clip_val=cfg.train.gradient_clip_val,
        num_sanity_val_steps=0,
        enable_checkpointing=saver is not None,
        logger=build_logger(cfg, run_dir),
        callbacks=[*callbacks, ResumeState(), *([saver] if saver else [])],
        default_root_dir=str(run_dir),
    )


def build_training(cfg: DictConfig, run_dir: Path) -> TrainingSetup:
    """Tokenizers and preflight, data, loss, teacher, student, module and trainer, in that order."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    load_plugins(list(cfg.plugins))
    loss = build_loss(
        cfg.loss.components, adaptive=cfg.loss.adaptive, chunk_size=cfg.loss.chunk_size
    )
    tokenizer = load_student_tokenizer(cfg.student)
    white_box = gives_logits(cfg.teacher)
    if white_box:  # before any weights load: a mismatch must not cost a model load
        loss.vocab = tokenizer_preflight(cfg, tokenizer)
    cache = open_teacher_cache(cfg, tokenizer)
    split = batch_split(cfg.hardware, cfg.data.batch_size)  # a bad split fails before weights load
    check_launch(split.replicas)
    ckpt_path = resume_path(cfg.resume, run_dir)
    datamodule = DistillDataModule(
        dataset_path(cfg, run_dir),
        tokenizer,
        max_length=cfg.data.max_length,
        batch_size=split.micro,
        val_fraction=cfg.data.val_fraction,
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
        curriculum=cfg.data.curriculum,
        accumulate_grad_batches=split.accumulate,
        teacher_cache=cache,
        quality=cfg.data,
    )
    datamodule.setup("fit")  # fail on a bad dataset before any weights load
    if cache is not None:
        cache.check_covers([e["id"] for e in datamodule.train_set + datamodule.val_set])
    needs_attn = bool({"attentions", "teacher_attentions"} & loss.requires)
    attn = "eager" if needs_attn else "sdpa"
    # A white-box teacher is loaded even for `loss=ce`: it scores held-out top-1 agreement. With
    # a logit cache it is not loaded at all: that is what the cache is for.
    on = teacher_device(cfg)
    teacher = load_teacher(cfg.teacher, attn, on) if white_box and cache is None else None
    student = load_student(student_config(cfg), attn)
    loss.prepare(student.config, None if teacher is None else teacher.config)
    scheduler = instantiate(cfg.train.scheduler) if cfg.train.scheduler else None
    module = DistillationModule(
        student,
        teacher,
        loss,
        instantiate(cfg.train.optimizer),
        scheduler,
        teacher_cache=cache is not None,
        on_policy=build_on_policy(cfg, tokenizer),
    )
    history, cost = LossHistory(), RunCost()
    saver = AdapterSaver(adapters_dir(run_dir), tokenizer)
    trainer = build_trainer(cfg, run_dir, [history, cost, saver, StepProgressBar()])
    return TrainingSetup(module, datamodule, trainer, history, cost, ckpt_path)


def check_launch(replicas: int) -> None:
    """Several processes inside a local multirun cannot work: Lightning would start each rank by
    re-running the whole sweep command. On a cluster the launcher starts the ranks instead."""
    from hydra.core.hydra_config import HydraConfig

    from distill.tracking import is_multirun

    external = any(k in os.environ for k in ("LOCAL_RANK", "SLURM_PROCID", "RANK"))
    hc = HydraConfig.get() if HydraConfig.initialized() else None
    if replicas > 1 and is_multirun(hc) and not external:
        raise UserError(
            f"hardware: {replicas} processes per job inside a local multirun (-m): run the sweep "
            "through a launcher that starts one task per device (hydra/launcher=slurm), or sweep "
            "with one device per job (hardware.devices=1)"
        )


def teacher_device(cfg: DictConfig) -> torch.device:
    """Where the teacher loads. bitsandbytes quantizes weights where they load, so a 4- or 8-bit
    teacher goes straight to this rank's GPU; another loads on the CPU and the module moves it."""
    if cfg.teacher.get("quantization") is None or inference_device(cfg.hardware).type != "cuda":
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def student_config(cfg: DictConfig) -> DictConfig:
    """The student's settings, with the hardware preset's gradient checkpointing when it has one."""
    if cfg.hardware.gradient_checkpointing is None:
        return cfg.student
    return OmegaConf.merge(
        cfg.student, {"gradient_checkpointing": cfg.hardware.gradient_checkpointing}
    )


def tokenizer_preflight(cfg: DictConfig, student_tokenizer: Any) -> int:
    """The vocabulary shared by student and white-box teacher, or a TokenizerMismatch."""
    student_vocab = AutoConfig.from_pretrained(resolve_model_dir(cfg.student.path)).vocab_size
    teacher_vocab = AutoConfig.from_pretrained(resolve_model_dir(cfg.teacher.path)).vocab_size
    return check_tokenizer_pair(
        student_tokenizer,
        load_teacher_tokenizer(cfg.teacher, need_chat=False),  # in its own format
        student_vocab,
        teacher_vocab,
        names=(f"student {cfg.student.name}", f"teacher {cfg.teacher.name}"),
    )


def open_teacher_cache(cfg: DictConfig, tokenizer: Any) -> LogitCache | None:
    """The sparse logit cache when `train.teacher_logits=cache`, checked against this run."""
    if cfg.train.teacher_logits != "cache":
        return None
    return LogitCache.open(cfg.teacher_cache.path, expect=expected_manifest(cfg, tokenizer))


def build_on_policy(cfg: DictConfig, tokenizer: Any) -> OnPolicy | None:
    """GKD-style on-policy sampling from `train.on_policy`, or None when it is off."""
    settings = cfg.train.on_policy
    if settings.lmbda == 0:
        return None
    schedule = None
    if settings.schedule is not None:
        schedule = build_schedule(settings.schedule, "train.on_policy.schedule")
    return OnPolicy(
        lmbda=settings.lmbda,
        eos_id=tokenizer.eos_token_id,
        pad_id=tokenizer.pad_token_id,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_length=cfg.data.max_length,
        schedule=schedule,
        seed=cfg.seed,
        tokenizer=tokenizer,
        log_samples=settings.log_samples,
    )


def fit(setup: TrainingSetup, run_dir: Path) -> dict[str, Any]:
    """Train, then record the loss summary, what the run cost (tokens/s, step time, peak memory,
    wall time) and the final validation metrics in metrics.json."""
    ckpt = None if setup.ckpt_path is None else str(setup.ckpt_path)
    setup.trainer.fit(setup.module, datamodule=setup.datamodule, ckpt_path=ckpt)
    metrics = {**setup.history.summary(), **setup.cost.summary}
    metrics.update(
        {k: float(v) for k, v in setup.trainer.callback_metrics.items() if k.startswith("val/")}
    )
    if not setup.trainer.is_global_zero:  # one writer; the other ranks' losses are their shares
        return metrics
    return update_metrics(run_dir, metrics)


def run_train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The `distill train` stage."""
    return fit(build_training(cfg, run_dir), run_dir)
