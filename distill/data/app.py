"""The generate stage: sample the instruction mixture, ask the teacher, store checked records."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from distill.data.generation.generate import generate_dataset
from distill.data.instructions.templates import instructions_from_config
from distill.data.store import DatasetStore
from distill.errors import UserError
from distill.runs import dataset_path, update_metrics
from distill.teachers import build_teacher

log = logging.getLogger(__name__)


def instructions_for(cfg: DictConfig) -> list:
    return instructions_from_config(cfg.data, cfg.seed)


def run_generate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The `distill generate` stage; a rerun asks only for what is not stored yet. Then the
    filtered dataset is exported (`data.export`).

    The teacher loads its weights only when there is something to ask.
    """
    instructions = instructions_for(cfg)
    store = DatasetStore(dataset_path(cfg, run_dir))
    teacher = build_teacher(cfg.teacher, cfg.hardware)
    summary = generate_dataset(
        teacher,
        instructions,
        store,
        cfg.teacher.system_prompt,
        few_shot=list(cfg.teacher.get("few_shot") or []),
        check_options=_check_options(cfg),
    )
    log.info("generate: %d records -> %s", summary["generate/records"], store.path)
    exported: dict[str, Any] = {}
    if cfg.data.get("export"):  # imported only when on: it loads `datasets` and torch
        from distill.data.quality.export import export_run

        exported = export_run(cfg, run_dir)
    metrics = update_metrics(run_dir, {**summary, **exported})
    stopped, message = summary["generate/stopped"], summary["generate/stop_message"]
    if stopped == "budget":
        log.warning("generate stopped at the budget: %s", message)
    elif stopped:  # a spend limit or an unreachable batch: the run cannot finish as asked
        raise UserError(f"generate stopped ({stopped}): {message}")
    return metrics


def _check_options(cfg: DictConfig) -> dict[str, Any]:
    quality = cfg.data.get("quality")
    if quality is None:
        return {}
    return {
        "compile_timeout_s": quality.compile_timeout_s,
        "test_timeout_s": quality.test_timeout_s,
    }
