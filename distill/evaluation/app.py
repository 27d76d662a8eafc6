"""The eval stage: score a samples file, or load a model (student + adapters, or teacher) and
run the harness; log to W&B when `logger=wandb`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from distill.evaluation.benchmarks import get_benchmark
from distill.evaluation.harness import evaluate_model, samples_label, score_samples_file
from distill.evaluation.samples import eval_files, read_jsonl
from distill.runs import adapters_dir, update_metrics

log = logging.getLogger(__name__)


def load_eval_model(cfg: DictConfig, run_dir: Path) -> tuple[Any, Any, str]:
    """(model, tokenizer, label): `eval.model=teacher`, the student with `eval.adapters`, or an
    exported model's folder (`eval.model=<folder>`, label `exported`: the shipped artefact).

    Without `eval.adapters`, the run directory's own `adapters/` is used when it exists (the
    pipeline's layout), else the student is scored as it was before distillation. The model runs
    where `hardware` says (a GPU with hardware=h100_80g and the like; see `inference_device`).
    With `eval.backend=vllm` the model is a vLLM engine on the same weights.
    """
    # torch and transformers load here, not with the module: scoring a samples file needs neither.
    from distill.hardware import inference_device
    from distill.models import load_student_tokenizer, load_teacher, load_teacher_tokenizer
    from distill.models.loading import load_base_student
    from distill.models.prompt_formats import adapter_prompt_format

    if cfg.eval.model not in ("student", "teacher"):
        return _load_exported(cfg, Path(cfg.eval.model))
    teacher = cfg.eval.model == "teacher"
    adapters = Path(cfg.eval.adapters) if cfg.eval.adapters else adapters_dir(run_dir)
    has_adapters = not teacher and (adapters / "adapter_config.json").exists()
    label = "teacher" if teacher else ("student" if has_adapters else "student_base")
    if teacher:
        tokenizer = load_teacher_tokenizer(cfg.teacher, need_chat=False)
    else:  # the format the adapters were trained in, else student.prompt_format's
        tokenizer = load_student_tokenizer(cfg.student, need_chat=False)
        if has_adapters:
            adapter_prompt_format(tokenizer, adapters, cfg.student.get("prompt_format"))
    if cfg.eval.backend == "vllm":
        return _load_vllm(cfg, str(adapters) if has_adapters else None), tokenizer, label
    device = inference_device(cfg.hardware)
    log.info("generating on %s", device)
    if teacher:
        return load_teacher(cfg.teacher, device=device), tokenizer, label
    model = load_base_student(cfg.student, device=device)
    if not has_adapters:
        log.info("no adapters given: scoring the student before distillation")
        return model, tokenizer, label
    from peft import PeftModel

    log.info("student adapters: %s", adapters)
    return PeftModel.from_pretrained(model, str(adapters)), tokenizer, label


def _load_exported(cfg: DictConfig, folder: Path) -> tuple[Any, Any, str]:
    """A model folder (`distill export`'s, or any other) with its own tokenizer and format."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.hardware import inference_device

    if cfg.eval.backend == "vllm":
        from distill.evaluation.vllm_backend import load_vllm

        return (
            load_vllm(str(folder), None, seed=cfg.seed),
            AutoTokenizer.from_pretrained(folder),
            "exported",
        )
    device = inference_device(cfg.hardware)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto").to(device).eval()
    return model, AutoTokenizer.from_pretrained(folder), "exported"


def unavailable_metrics(benchmark: str) -> dict[str, Any] | None:
    """``{"eval/<benchmark>/skipped": why}`` when the benchmark cannot be scored here (a
    toolchain is missing; logged as a warning), else None."""
    why = get_benchmark(benchmark).unavailable()
    if why is None:
        return None
    log.warning("eval.benchmark=%s skipped: %s", benchmark, why)
    return {f"eval/{benchmark}/skipped": why}


def run_eval(
    cfg: DictConfig, run_dir: Path, loaded: tuple[Any, Any, str] | None = None
) -> dict[str, Any]:
    """The `distill eval` stage; with `eval.samples=FILE` no model is loaded.

    Args:
        loaded: ``(model, tokenizer, label)`` built by the caller (an API teacher, see
            ``distill.teacher_eval``); None: :func:`load_eval_model`.
    """
    run_dir = Path(run_dir)
    out_dir = run_dir / "eval"
    if skipped := unavailable_metrics(cfg.eval.benchmark):  # before a model is loaded
        return update_metrics(run_dir, skipped)
    if cfg.eval.samples:
        metrics = score_samples_file(Path(cfg.eval.samples), cfg.eval, out_dir)
        label = samples_label(Path(cfg.eval.samples))
    else:
        model, tokenizer, label = loaded or load_eval_model(cfg, run_dir)
        metrics = evaluate_model(model, tokenizer, cfg.eval, out_dir, label)
    log_to_wandb(cfg, run_dir, metrics, eval_files(out_dir, label, cfg.eval.benchmark).results)
    return update_metrics(run_dir, metrics)


def log_to_wandb(cfg: DictConfig, run_dir: Path, metrics: dict[str, Any], results: Path) -> None:
    """With `logger=wandb`: the metrics and a table of the samples with their outcome."""
    target = str(cfg.logger.get("_target_", "")) if cfg.get("logger") else ""
    if not target.endswith("WandbLogger"):
        return
    from hydra.utils import instantiate

    from distill.evaluation.report import wandb_samples_table

    run = instantiate(cfg.logger, save_dir=str(run_dir)).experiment
    numbers = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
    run.summary.update({k: v for k, v in metrics.items() if isinstance(v, str)})
    table = wandb_samples_table(read_jsonl(results))
    run.log({**numbers, f"eval/{cfg.eval.benchmark}/samples": table})
    run.finish()


def _load_vllm(cfg: DictConfig, adapters: str | None) -> Any:
    """The vLLM engine on the teacher's or the (pruned) student's folder."""
    from distill.evaluation.vllm_backend import load_vllm
    from distill.models import resolve_model_dir
    from distill.models.loading import pruned_model_dir

    if cfg.eval.model == "teacher":
        return load_vllm(resolve_model_dir(cfg.teacher.path), None, seed=cfg.seed)
    model_dir = resolve_model_dir(cfg.student.path)
    if cfg.student.keep_layers is not None:
        model_dir = pruned_model_dir(model_dir, list(cfg.student.keep_layers))
    quantized = cfg.student.quantization is not None
    return load_vllm(model_dir, adapters, seed=cfg.seed, quantized=quantized)
