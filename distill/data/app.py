"""The generate stage: sample the instruction mixture, ask the teacher, store checked records."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from distill.data.generation import generate_dataset
from distill.data.store import DatasetStore
from distill.data.templates import sample_instructions
from distill.runs import dataset_path, update_metrics
from distill.teachers import build_teacher

log = logging.getLogger(__name__)


def instructions_for(cfg: DictConfig) -> list:
    return sample_instructions(
        cfg.data.num_examples,
        cfg.data.languages,
        cfg.data.task_kinds,
        cfg.data.difficulties,
        seed=cfg.seed,
    )


def run_generate(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The `distill generate` stage; a rerun asks only for what is not stored yet.

    The teacher loads its weights only when there is something to ask.
    """
    instructions = instructions_for(cfg)
    store = DatasetStore(dataset_path(cfg, run_dir))
    teacher = build_teacher(cfg.teacher)
    summary = generate_dataset(teacher, instructions, store, cfg.teacher.system_prompt)
    log.info(
        "generate: %d answered, %d already stored, %d with code, %d parse, $%.4f -> %s",
        summary["generate/answered"],
        summary["generate/already_stored"],
        summary["generate/with_code"],
        summary["generate/syntax_ok"],
        summary["generate/cost_usd"],
        store.path,
    )
    return update_metrics(run_dir, summary)
