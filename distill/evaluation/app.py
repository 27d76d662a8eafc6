"""The eval stage: load the model to score (student + adapters, or teacher), run the harness."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from distill.evaluation.harness import evaluate_model
from distill.models import load_teacher, load_tokenizer
from distill.models.loading import load_base_student
from distill.runs import adapters_dir, update_metrics

log = logging.getLogger(__name__)


def load_eval_model(cfg: DictConfig, run_dir: Path) -> tuple[Any, Any, str]:
    """(model, tokenizer, label): `eval.model=teacher`, or the student with `eval.adapters`.

    Without `eval.adapters`, the run directory's own `adapters/` is used when it exists (the
    pipeline's layout), else the student is scored as it was before distillation.
    """
    if cfg.eval.model == "teacher":
        return load_teacher(cfg.teacher), load_tokenizer(cfg.teacher.path), "teacher"
    model = load_base_student(cfg.student)
    adapters = Path(cfg.eval.adapters) if cfg.eval.adapters else adapters_dir(run_dir)
    if (adapters / "adapter_config.json").exists():
        from peft import PeftModel

        log.info("student adapters: %s", adapters)
        return (
            PeftModel.from_pretrained(model, str(adapters)),
            load_tokenizer(cfg.student.path),
            "student",
        )
    log.info("no adapters given: scoring the student before distillation")
    return model, load_tokenizer(cfg.student.path), "student_base"


def run_eval(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The `distill eval` stage."""
    model, tokenizer, label = load_eval_model(cfg, run_dir)
    metrics = evaluate_model(model, tokenizer, cfg.eval, Path(run_dir) / "eval", label)
    return update_metrics(run_dir, metrics)
