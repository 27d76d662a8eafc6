"""`inference_device` (where eval, a local teacher and the pipeline's scoring run their model)
and `resolve_dtype` (what `dtype: auto` becomes on this hardware)."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from distill import hardware
from distill.errors import UserError
from distill.hardware import inference_device
from distill.models.loading import load_base_student, load_teacher
from tests.conftest import compose_config

NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")


def test_the_cpu_preset_runs_on_the_cpu() -> None:
    assert inference_device(compose_config("eval").hardware) == torch.device("cpu")


@NO_GPU
def test_auto_falls_back_to_the_cpu() -> None:
    assert inference_device(OmegaConf.create({"accelerator": "auto"})) == torch.device("cpu")


@NO_GPU
def test_a_gpu_preset_without_a_gpu_names_the_fix() -> None:
    hardware = compose_config("eval", ["hardware=h100_80g"]).hardware
    with pytest.raises(UserError, match="hardware.accelerator=gpu .* use hardware=cpu"):
        inference_device(hardware)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_gpu_preset_runs_on_the_first_gpu() -> None:
    hardware = compose_config("eval", ["hardware=h100_80g"]).hardware
    assert inference_device(hardware) == torch.device("cuda", 0)


@NO_GPU
@pytest.mark.parametrize("native", [True, False])
def test_auto_dtype_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, native) -> None:
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: native)
    assert hardware.resolve_dtype("auto") == (torch.bfloat16 if native else torch.float32)
    assert hardware.resolve_dtype("auto", "cpu") == (torch.bfloat16 if native else torch.float32)
    assert hardware.resolve_dtype("float16") is torch.float16  # a named dtype is kept


def test_an_auto_teacher_and_student_load_in_the_resolved_dtype() -> None:
    expected = hardware.resolve_dtype("auto", "cpu")
    cfg = compose_config("train", ["experiment=tiny_smoke"])
    cfg.teacher.dtype, cfg.student.compute_dtype, cfg.student.quantization = "auto", "auto", None
    assert load_teacher(cfg.teacher).dtype == expected
    assert load_base_student(cfg.student).dtype == expected
