"""The stages outside the Trainer on a CUDA GPU (`pytest -m gpu`; the vLLM case also needs
`pip install vllm`): a local teacher generates there, the 4-bit student is evaluated there, the
pipeline scores there, and vLLM scores the same problems as transformers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from distill.checks import stage_checks
from distill.config import validate
from distill.data.app import run_generate
from distill.evaluation.app import load_eval_model, run_eval
from distill.pipeline import run_pipeline
from distill.teachers import build_teacher
from tests.conftest import compose_config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
GPU = "hardware=h100_80g"  # any preset with accelerator: gpu


def _score(backend: str, run_dir: Path) -> tuple[dict, list[dict]]:
    overrides = ["eval.model=teacher", f"eval.backend={backend}", "eval.limit=8", GPU]
    cfg = compose_config("eval", [*overrides, "eval.max_new_tokens=128"])
    validate(cfg, *stage_checks("eval"))
    metrics = run_eval(cfg, run_dir)
    samples = [json.loads(line) for line in (run_dir / "eval" / "teacher_samples.jsonl").open()]
    return metrics, samples


def test_a_local_teacher_generates_on_the_gpu(tmp_path: Path) -> None:
    cfg = compose_config("generate", [GPU, "data.num_examples=2", "teacher.max_new_tokens=32"])
    model, _ = build_teacher(cfg.teacher, cfg.hardware)._load()
    assert model.device.type == "cuda"
    metrics = run_generate(cfg, tmp_path)
    assert metrics["generate/records"] == 2


def test_the_pipeline_scores_on_the_gpu(tmp_path: Path) -> None:
    overrides = ["experiment=tiny_smoke", GPU, "hardware.micro_batch_size=null"]
    metrics = run_pipeline(compose_config("pipeline", overrides), tmp_path)
    assert (tmp_path / "report.md").is_file()
    assert metrics["eval/humaneval/num_samples"] == 3


def test_the_4bit_student_generates_on_the_gpu(tmp_path: Path) -> None:
    cfg = compose_config("eval", [GPU, "eval.limit=2", "eval.max_new_tokens=32"])
    model, _, label = load_eval_model(cfg, tmp_path)
    assert label == "student_base"
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    metrics = run_eval(cfg, tmp_path / "run")
    assert metrics["eval/humaneval/num_samples"] == 2


@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="needs `pip install vllm`")
def test_vllm_scores_the_same_problems_as_transformers(tmp_path: Path) -> None:
    vllm_metrics, vllm_samples = _score("vllm", tmp_path / "vllm")
    hf_metrics, hf_samples = _score("hf", tmp_path / "hf")
    assert [s["task_id"] for s in vllm_samples] == [s["task_id"] for s in hf_samples]
    assert all(s["completion"].strip() for s in vllm_samples)
    assert vllm_metrics["eval/humaneval/num_samples"] == hf_metrics["eval/humaneval/num_samples"]
    # Greedy on the same weights: most answers are the same text (the kernels round differently).
    pairs = zip(vllm_samples, hf_samples, strict=True)
    same = sum(v["completion"] == h["completion"] for v, h in pairs)
    assert same >= len(hf_samples) // 2, (same, len(hf_samples))
