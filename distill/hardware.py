"""Resolve hardware presets into Lightning Trainer arguments and the split of the global batch."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from distill.errors import UserError

log = logging.getLogger(__name__)


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 instructions (AVX512-BF16 or AMX), so autocast pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_dtype(name: str, device: torch.device | str | None = None) -> torch.dtype:
    """A config's dtype name as a torch dtype. `auto` is bf16 where `device` (default: the CUDA
    GPU if there is one, else the CPU) computes it natively, else fp32: on a CPU without
    AVX512-BF16 or AMX, bf16 matmuls are emulated and run several times slower than fp32."""
    if name != "auto":
        return getattr(torch, name)
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(device).type == "cuda":
        native = torch.cuda.is_bf16_supported()
    else:
        native = cpu_supports_bf16()
    return torch.bfloat16 if native else torch.float32


def resolve_precision(cfg: DictConfig) -> str:
    """`precision: auto`: bf16 autocast where the hardware supports it, else fp32 (CPU) or fp16."""
    if cfg.precision != "auto":
        return cfg.precision
    if cfg.accelerator == "cpu":
        return "bf16-mixed" if cpu_supports_bf16() else "32-true"
    return (
        "bf16-mixed" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "16-mixed"
    )


def inference_device(hardware: DictConfig) -> torch.device:
    """Where work outside the Trainer runs its model (`distill eval`, a local teacher's
    `distill generate`, the pipeline's scoring): the first CUDA GPU when `hardware.accelerator` is
    gpu or cuda (or auto, with one visible), else the CPU.

    Raises:
        UserError: `accelerator` gpu or cuda on a machine where torch sees no CUDA GPU.
    """
    accelerator = str(hardware.accelerator)
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda", 0)
    if accelerator in ("gpu", "cuda"):
        raise UserError(
            f"hardware.accelerator={accelerator} but torch sees no CUDA GPU here "
            f"(torch {torch.__version__}): use hardware=cpu, or install a CUDA build of torch"
        )
    if accelerator not in ("cpu", "auto"):
        log.warning("hardware.accelerator=%s: running the model on the CPU", accelerator)
    return torch.device("cpu")


@dataclass(frozen=True)
class BatchSplit:
    """How one optimizer step's global batch is cut: `micro` examples per forward pass on each of
    `replicas` processes (devices x nodes), `accumulate` passes per step."""

    micro: int
    accumulate: int
    replicas: int

    @property
    def global_batch(self) -> int:
        return self.micro * self.accumulate * self.replicas


def batch_split(hardware: DictConfig, global_batch: int) -> BatchSplit:
    """Derive gradient accumulation so that `global_batch` is the same on every preset.

    Args:
        hardware: the `hardware` group (`micro_batch_size`, `devices`, `num_nodes`).
        global_batch: `data.batch_size`, examples per optimizer step over all processes.

    Raises:
        UserError: when the global batch does not split into whole micro-batches.
    """
    replicas = int(hardware.devices) * int(hardware.num_nodes)
    micro = hardware.micro_batch_size
    if micro is None:  # one pass per step: the global batch shared by the processes
        micro = max(global_batch // replicas, 1)
    per_step = micro * replicas
    if global_batch % per_step:
        raise UserError(
            f"data.batch_size={global_batch} (the global batch) does not split into micro-batches "
            f"of hardware.micro_batch_size={micro} on {hardware.devices} device(s) x "
            f"{hardware.num_nodes} node(s) = {per_step} examples per pass: make data.batch_size a "
            f"multiple of {per_step}, or change hardware.micro_batch_size"
        )
    return BatchSplit(micro=micro, accumulate=global_batch // per_step, replicas=replicas)


def trainer_kwargs(hardware: DictConfig, global_batch: int) -> dict[str, Any]:
    """Trainer arguments from the `hardware` group, with the derived accumulation."""
    if hardware.threads:
        torch.set_num_threads(hardware.threads)
    precision = resolve_precision(hardware)
    split = batch_split(hardware, global_batch)
    log.info(
        "hardware: %s x%s on %s node(s), strategy %s, precision %s; global batch %d = %d per pass "
        "x %d accumulated x %d process(es)",
        hardware.accelerator,
        hardware.devices,
        hardware.num_nodes,
        hardware.strategy,
        precision,
        split.global_batch,
        split.micro,
        split.accumulate,
        split.replicas,
    )
    return {
        "accelerator": hardware.accelerator,
        "devices": hardware.devices,
        "num_nodes": hardware.num_nodes,
        "strategy": hardware.strategy,
        "precision": precision,
        "accumulate_grad_batches": split.accumulate,
        # Our batch sampler shards the epoch by rank itself (Lightning cannot wrap a batch sampler
        # in a DistributedSampler); validation runs whole on every rank, so its means are exact.
        "use_distributed_sampler": False,
    }
