"""`distill <command> [overrides]`: one command, each subcommand a Hydra app over `conf/`."""

from __future__ import annotations

import difflib
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from distill.config import UserError, register_configs, validate

log = logging.getLogger("distill")
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
COMMANDS = {
    "generate": "the teacher answers the instruction mixture; records go to the run's dataset",
    "train": "distil the teacher into the student (LoRA on the 4-bit student); saves adapters",
    "eval": "run the student's code on HumanEval in child processes; pass@k",
    "pipeline": "generate, train and eval in one run directory, then a before/after table",
    "teacher-cache": "the white-box teacher's sparse logits (top-k or sampled) over the dataset",
    "losses": "list every registered loss component, what it needs and its arguments",
}
USAGE = (
    "usage: distill <command> [hydra overrides] [-m] [--help]\n\ncommands:\n"
    + "".join(f"  {name:<14} {text}\n" for name, text in COMMANDS.items())
    + "\n`distill <command> --help` shows that command's config groups and options.\n"
)


def stage_runner(stage: str) -> Callable[[DictConfig, Path], dict[str, Any]]:
    """The function that runs `stage`, imported late so `--help` stays fast."""
    if stage == "generate":
        from distill.data.app import run_generate

        return run_generate
    if stage == "train":
        from distill.training.app import run_train

        return run_train
    if stage == "eval":
        from distill.evaluation.app import run_eval

        return run_eval
    if stage == "teacher_cache":
        from distill.data.cache_app import run_teacher_cache

        return run_teacher_cache
    from distill.pipeline import run_pipeline

    return run_pipeline


def run_stage(cfg: DictConfig) -> float | None:
    """Validate, run the stage in Hydra's output directory, return the metric to optimise."""
    from distill.checks import stage_checks

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        validate(cfg, *stage_checks(cfg.stage))
        metrics = stage_runner(cfg.stage)(cfg, run_dir)
    except UserError as err:  # the message says what to do; a traceback would only bury it
        log.error("%s", err)
        raise SystemExit(2) from None
    log.info("run directory: %s", run_dir)
    for key in ("eval/humaneval/pass@1", "val/ce", "generate/records"):
        if key in metrics:
            return metrics[key]
    return None


def losses_table(plugins: list[str]) -> str:
    """Every registered loss (plugin modules given as arguments are imported first)."""
    import inspect

    from distill.losses import LOSSES, load_plugins

    load_plugins(plugins)
    rows = ["| name | requires | arguments (defaults) |", "|---|---|---|"]
    for name in LOSSES.names():
        factory = LOSSES.get(name)
        params = inspect.signature(factory).parameters.values()
        args = ", ".join(f"{p.name}={p.default!r}" for p in params if p.name != "self")
        rows.append(f"| {name} | {', '.join(sorted(factory.requires))} | {args or '-'} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Dispatch `distill <command>` to that command's Hydra app."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        close = difflib.get_close_matches(command, COMMANDS, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        sys.stderr.write(f"distill: unknown command '{command}'{hint}\n\n{USAGE}")
        raise SystemExit(2)
    if command == "losses":
        sys.stdout.write(losses_table(rest))
        return
    register_configs()
    sys.argv = [f"distill {command}", *rest]
    config_name = command.replace("-", "_")  # teacher-cache -> conf/teacher_cache.yaml
    app = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(
        run_stage
    )
    app()


if __name__ == "__main__":
    main()
