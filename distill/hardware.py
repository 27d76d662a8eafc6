"""Resolve hardware presets into Lightning Trainer arguments."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (AVX512-BF16 or AMX), so autocast pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(cfg: DictConfig) -> str:
    """`precision: auto` is bf16 autocast where the hardware supports it, else fp32."""
    if cfg.precision != "auto":
        return cfg.precision
    if cfg.accelerator == "cpu":
        return "bf16-mixed" if cpu_supports_bf16() else "32-true"
    return (
        "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
    )


def trainer_kwargs(cfg: DictConfig) -> dict:
    """Trainer arguments from the `hardware` group."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    precision = resolve_precision(cfg)
    log.info(
        "hardware: %s x%s, strategy %s, precision %s",
        cfg.accelerator,
        cfg.devices,
        cfg.strategy,
        precision,
    )
    return {
        "accelerator": cfg.accelerator,
        "devices": cfg.devices,
        "strategy": cfg.strategy,
        "precision": precision,
        "accumulate_grad_batches": cfg.accumulate_grad_batches,
    }
