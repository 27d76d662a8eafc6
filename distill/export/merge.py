"""Merge LoRA adapters into the student they were trained on.

A 4-bit student's NF4 weights are dequantized first (to the compute dtype the adapters saw), the
adapters are added to those dense weights (W + scale * B A), and the result is cast to the export
dtype: the merged model computes what the adapters on the 4-bit base computed, up to the rounding
of that cast. Re-quantizing after the merge, as merging into a 4-bit layer would, is what this
avoids.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from transformers import PreTrainedModel

from distill.hardware import resolve_dtype
from distill.models.loading import load_base_student

log = logging.getLogger(__name__)


def trained_student(student: DictConfig, adapters: Path) -> PreTrainedModel:
    """The student as it was trained and evaluated: the (4-bit) base with the adapters on it."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_base_student(student), str(adapters))
    return model.eval()


def merged_student(student: DictConfig, adapters: Path, dtype: str) -> PreTrainedModel:
    """A plain ``transformers`` model: the dequantized base with the adapters merged in.

    Args:
        student: The student config the adapters were trained with (path, pruning, quantization).
        adapters: A PEFT adapters folder.
        dtype: ``bfloat16``, ``float16`` or ``float32``.
    """
    from peft import PeftModel

    base = load_base_student(student)
    if student.quantization is not None:
        computed_in = resolve_dtype(student.compute_dtype)  # `auto` logged as what it became
        log.info("dequantizing the %s base to %s", student.quantization, computed_in)
        base = base.dequantize()
    merged = PeftModel.from_pretrained(base, str(adapters)).merge_and_unload()
    merged = merged.to(getattr(torch, dtype)).eval()
    merged.config.dtype = dtype
    return merged
