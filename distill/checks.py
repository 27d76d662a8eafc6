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
    white_box = cfg.teacher.kind == "hf"
    return [
        *check_loss_config(cfg.loss.components, teacher_white_box=white_box),
        *check_on_policy(cfg.train.on_policy, white_box),
    ]


def check_on_policy(on_policy: DictConfig, white_box: bool) -> Iterable[str]:
    from distill.losses.schedules import check_schedule

    if on_policy.schedule is not None:
        yield from check_schedule(on_policy.schedule, "train.on_policy.schedule")
    if on_policy.schedule is not None and on_policy.lmbda == 0:
        yield "train.on_policy.schedule multiplies lmbda, which is 0: set train.on_policy.lmbda > 0"
    if on_policy.lmbda > 0 and not white_box:
        yield (
            "train.on_policy: the student's own samples need an online white-box teacher to "
            "score them (a text-only teacher or a logit cache knows only the stored answers); "
            "set teacher=hf teacher.path=... or train.on_policy.lmbda=0"
        )


def check_eval(cfg: DictConfig) -> Iterable[str]:
    adapters = cfg.eval.get("adapters")
    if adapters and not (Path(adapters) / "adapter_config.json").exists():
        return [
            f"eval.adapters={adapters} has no adapter_config.json: give a train run's adapters/"
        ]
    return []


def check_cache_teacher(cfg: DictConfig) -> Iterable[str]:
    if cfg.teacher.kind != "hf":
        return [
            f"teacher={cfg.teacher.name} gives no logits: `distill teacher-cache` needs a "
            "white-box teacher (teacher.kind=hf), e.g. teacher=embedded_smollm2_135m or "
            "teacher=hf teacher.path=<folder>"
        ]
    return []


STAGE_CHECKS: dict[str, tuple[Callable[[DictConfig], Iterable[str]], ...]] = {
    "generate": (check_data,),
    "train": (check_dataset, check_losses),
    "eval": (check_eval,),
    "teacher_cache": (check_dataset, check_cache_teacher),
    "pipeline": (check_data, check_losses, check_eval),
}


def stage_checks(stage: str) -> tuple[Callable[[DictConfig], Iterable[str]], ...]:
    return STAGE_CHECKS.get(stage, ())
