"""`distill <command> [overrides]`: one command, each subcommand a Hydra app over `conf/`."""

from __future__ import annotations

import difflib
import logging
import math
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from distill import tracking
from distill.config import RunConfig, validate
from distill.errors import UserError
from distill.runs import SweepReport, job_name, read_status, write_status

log = logging.getLogger("distill")
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
COMMAND_ENV = "DISTILL_COMMAND"
COMMANDS = {
    "generate": "the teacher answers the instruction mixture; records go to the run's dataset",
    "train": "distil the teacher into the student (LoRA on the 4-bit student); saves adapters",
    "eval": "score the student (or a samples file) on HumanEval or MBPP in a sandbox; pass@k",
    "pipeline": "generate, train and eval in one run directory, then a before/after table",
    "teacher-cache": "the white-box teacher's sparse logits (top-k or sampled) over the dataset",
    "losses": "list every registered loss component, what it needs and its arguments",
    "compare": "several runs' metrics side by side: table, Markdown, CSV and a pass@k bar chart",
    "export": "merge a run's adapters into the student: a Hugging Face folder with a model card",
    "chat": "ask the student (or an exported model) a question; the answer streams in",
}
USAGE = (
    "usage: distill <command> [hydra overrides] [-m] [--help]\n\ncommands:\n"
    + "".join(f"  {name:<14} {text}\n" for name, text in COMMANDS.items())
    + "\n`distill <command> --help` shows that command's config groups and options.\n"
)


def register_resolvers() -> None:
    """The OmegaConf resolvers conf/ uses: `${job_name:...}` names a sweep's job folders,
    `${wandb_offline:}`, `${run_group:}`, `${run_name:}` and `${run_tags:}` fill the W&B logger.

    Called when this module is imported, so a launcher's worker process (submitit, joblib), which
    imports the task function's module, resolves them too.
    """
    for name, resolver in {"job_name": job_name, **tracking.RESOLVERS}.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


def register_hydra() -> None:
    """Everything a composed config needs: the resolvers, and in Hydra's ConfigStore the run's
    schema as `base_run` (the first entry of every primary config's defaults) and each registered
    teacher's schema as `teacher/schema/<kind>` (the first entry of its YAML files' defaults)."""
    from distill.teachers import TEACHERS

    store = ConfigStore.instance()
    store.store(name="base_run", node=RunConfig)
    # At the end of a multirun: every job's status in sweep_status.json, failed jobs listed. The
    # target is named from the class, so no YAML file holds one of our module paths.
    report = {"_target_": f"{SweepReport.__module__}.{SweepReport.__qualname__}"}
    store.store(name="hydra_callbacks", node={"hydra": {"callbacks": {"sweep_report": report}}})
    for kind in TEACHERS.names():
        store.store(group="teacher/schema", name=kind, node=TEACHERS.get(kind).Config)
    register_resolvers()


register_resolvers()


def stage_runner(stage: str) -> Callable[[DictConfig, Path], dict[str, Any]]:
    """The function that runs `stage`, imported late so `--help` stays fast."""
    if stage == "generate":
        from distill.data.app import run_generate

        return run_generate
    if stage == "train":
        from distill.training.app import run_train

        return run_train
    if stage == "eval":
        from distill.teacher_eval import run_eval  # the evaluation stage, or an API teacher's

        return run_eval
    if stage == "teacher_cache":
        from distill.data.cache.app import run_teacher_cache

        return run_teacher_cache
    if stage == "export":
        from distill.export.app import run_export

        return run_export
    if stage == "chat":
        from distill.export.chat import run_chat

        return run_chat
    from distill.pipeline import run_pipeline

    return run_pipeline


def run_stage(cfg: DictConfig) -> float | None:
    """Validate, run the stage in Hydra's output directory, return the metric to optimise.

    Every job records its state in status.json. In a multirun a failing job records its error
    there and returns NaN, so the other jobs go on (`distill.runs.SweepReport` lists the failures
    at the end); with `resume=true` a job that completed before is not run again.
    """
    hc = HydraConfig.get()
    run_dir, sweep = Path(hc.runtime.output_dir), tracking.is_multirun(hc)
    tracking.redact_logs()
    tracking.tidy_third_party_logs()
    tracking.scrub_saved_config(run_dir)
    rank0 = tracking.global_rank() == 0
    previous = read_status(run_dir)
    if cfg.resume and previous and previous["status"] == "completed":
        log.info("resume: %s completed before; not run again", run_dir)
        return previous.get("metric")
    if rank0:
        write_status(run_dir, "running", overrides=list(hc.overrides.task))
    metrics: dict[str, Any] = {}
    try:
        metrics = run_checked(cfg, run_dir)
    except (Exception, SystemExit) as err:
        tracking.finish_run(metrics, run_dir, failed=True)
        if rank0:
            write_status(
                run_dir,
                "failed",
                error=f"{type(err).__name__}: {err}"[:2000],
                traceback=traceback.format_exc()[-4000:],
            )
        if sweep:  # one job's failure must not stop the sweep
            log.error("job failed (the sweep goes on): %s: %s", type(err).__name__, err)
            return math.nan
        if isinstance(err, UserError):  # the message says what to do; a traceback would bury it
            log.error("%s", err)
            raise SystemExit(2) from None
        raise
    tracking.finish_run(metrics, run_dir, failed=False)
    key, value = optimized_metric(cfg, metrics)
    if rank0:
        write_status(run_dir, "completed", optimize_metric=key, metric=value)
    log.info("run directory: %s", run_dir)
    return value


def run_checked(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Validate the config (no weights loaded), start tracking, run the stage."""
    from distill.checks import stage_checks

    validate(cfg, *stage_checks(cfg.stage))
    tracking.start_run(cfg, run_dir)
    return stage_runner(cfg.stage)(cfg, run_dir)


def optimized_metric(cfg: DictConfig, metrics: dict[str, Any]) -> tuple[str | None, float | None]:
    """(`optimize_metric`, its value), else the stage's headline: pass@1, val/ce, records."""
    if cfg.get("optimize_metric"):
        key = cfg.optimize_metric
        if key not in metrics:
            log.warning("optimize_metric=%s is not among this run's metrics: returning NaN", key)
            return key, math.nan
        return key, float(metrics[key])
    for key in (f"eval/{cfg.eval.benchmark}/pass@1", "val/ce", "generate/records"):
        if key in metrics:
            return key, metrics[key]
    return None, None


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
    rows.append(
        "\nEvery component also takes weight, schedule (multiplies the weight), and, where it "
        "applies, temperature_schedule, layer_schedule and token_weighting (none, "
        "teacher_confidence, teacher_entropy, code_only): see README, Distillation objectives."
    )
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Dispatch `distill <command>` to that command's Hydra app."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("LOCAL_RANK") and os.environ.get(COMMAND_ENV) and argv[:1] != ["-h"]:
        if not argv or argv[0] not in COMMANDS:  # a DDP rank Lightning started: same command
            argv = [os.environ[COMMAND_ENV], *argv]
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
    if command == "compare":  # reads run directories: no config to compose
        from distill.evaluation.compare import main as compare_main

        compare_main(rest)
        return
    if command == "eval":  # `distill eval samples=FILE` is short for eval.samples=FILE
        rest = [f"eval.{a}" if a.startswith("samples=") else a for a in rest]
    register_hydra()
    # Lightning starts the other DDP ranks by re-running sys.argv (program path kept as it is),
    # which Hydra sees without the command: they find it in the environment.
    os.environ[COMMAND_ENV] = command
    sys.argv = [sys.argv[0], *rest]
    config_name = command.replace("-", "_")  # teacher-cache -> conf/teacher_cache.yaml
    app = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(
        run_stage
    )
    app()


if __name__ == "__main__":
    main()
