"""`inference_device`: where eval, a local teacher and the pipeline's scoring run their model."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from distill.errors import UserError
from distill.hardware import inference_device
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
