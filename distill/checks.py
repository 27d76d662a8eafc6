"""The checks each stage adds to `validate`: all cheap, none loads weights."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from omegaconf import DictConfig


def check_data(cfg: DictConfig) -> Iterable[str]:
    from distill.data.templates import check_mixture, sample_instructions

    d = cfg.data
    problems = check_mixture(d.languages, d.task_kinds, d.difficulties)
    if not problems:
        try:
            sample_instructions(d.num_examples, d.languages, d.task_kinds, d.difficulties, cfg.seed)
        except ValueError as err:
            problems.append(str(err))
    return problems


def check_dataset(cfg: DictConfig) -> Iterable[str]:
    dataset = cfg.data.dataset
    if dataset and not Path(dataset).exists():
        return [f"data.dataset={dataset} does not exist: give a JSONL from `distill generate`"]
    return []


def check_losses(cfg: DictConfig) -> Iterable[str]:
    from distill.losses import check_loss_config, load_plugins

    try:
        load_plugins(list(cfg.plugins))
    except ImportError as err:
        return [str(err)]
    return list(check_loss_config(cfg.loss.components, teacher_white_box=cfg.teacher.kind == "hf"))


def check_eval(cfg: DictConfig) -> Iterable[str]:
    adapters = cfg.eval.get("adapters")
    if adapters and not (Path(adapters) / "adapter_config.json").exists():
        return [
            f"eval.adapters={adapters} has no adapter_config.json: give a train run's adapters/"
        ]
    return []


STAGE_CHECKS: dict[str, tuple[Callable[[DictConfig], Iterable[str]], ...]] = {
    "generate": (check_data,),
    "train": (check_dataset, check_losses),
    "eval": (check_eval,),
    "pipeline": (check_data, check_losses, check_eval),
}


def stage_checks(stage: str) -> tuple[Callable[[DictConfig], Iterable[str]], ...]:
    return STAGE_CHECKS.get(stage, ())
