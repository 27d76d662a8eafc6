"""Experiment tracking: the W&B run of a job, and keeping secrets out of everything a run writes.

W&B is chosen with `logger=wandb` (`conf/logger/wandb.yaml`): offline unless `WANDB_API_KEY` is
set, `group` the experiment or the sweep, `job_type` the stage, `tags` the chosen config options,
`name` the job's directory. The run starts before the stage (so every later `WandbLogger` reuses
it), gets the resolved config with secrets removed, and is always finished, also on failure.

Secrets (distill/redaction.py) are masked in the W&B config, in Hydra's saved `.hydra/*.yaml` and
`multirun.yaml`, and in the log records of the job.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from distill.redaction import scrub, scrub_text, secret_values

log = logging.getLogger(__name__)


def scrub_saved_config(run_dir: Path) -> None:
    """Mask secrets in Hydra's record of the job (`.hydra/*.yaml`) and of its sweep."""
    files = list((Path(run_dir) / ".hydra").glob("*.yaml"))
    files += [p / "multirun.yaml" for p in Path(run_dir).parents[:1]]
    secrets = secret_values()
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text()
        clean = scrub_text(text, secrets)
        if clean != text:
            path.write_text(clean)
            log.warning("secrets masked in %s: pass keys through the environment instead", path)


class RedactSecrets(logging.Filter):
    """Masks secrets in log records before any handler writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets = secret_values()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub_text(message, self.secrets)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def redact_logs() -> None:
    """Install `RedactSecrets` on every handler of the root logger (Hydra's console and file)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(RedactSecrets())


class DropAdverts(logging.Filter):
    """Drops third-party tips that advertise other products (Lightning's "💡 Tip: ...")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith("💡 Tip")


def tidy_third_party_logs() -> None:
    """Each message once, in Hydra's format: Lightning's own console handler goes (its records
    reach Hydra's through the root logger instead), and so do its adverts."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, DropAdverts) for f in handler.filters):
            handler.addFilter(DropAdverts())


# --- W&B ---------------------------------------------------------------------------------------


def _hydra() -> Any:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def is_multirun(hc: Any) -> bool:
    from hydra.types import RunMode

    return hc is not None and hc.mode == RunMode.MULTIRUN


def wandb_offline() -> bool:
    """Offline unless an API key is set: no run ever needs an account to succeed."""
    return not os.environ.get("WANDB_API_KEY")


def run_group() -> str | None:
    """The experiment (`experiment=<slug>`), else the sweep (`<stage>-<sweep dir>`), else none."""
    hc = _hydra()
    if hc is None:
        return None
    experiment = hc.runtime.choices.get("experiment")
    if experiment:
        return str(experiment)
    if is_multirun(hc):
        return f"{hc.job.name}-{Path(hc.sweep.dir).name}"
    return None


def run_tags() -> list[str]:
    """The chosen option of every config group, as `group=option` (Hydra's own groups left out)."""
    hc = _hydra()
    if hc is None:
        return []
    choices = hc.runtime.choices
    return [f"{g}={o}" for g, o in choices.items() if o and not str(g).startswith("hydra")]


def run_name() -> str | None:
    """The job's directory name: in a sweep, its number and overrides."""
    hc = _hydra()
    return Path(hc.runtime.output_dir).name if hc is not None else None


RESOLVERS = {
    "wandb_offline": wandb_offline,
    "run_group": run_group,
    "run_tags": run_tags,
    "run_name": run_name,
}


def uses_wandb(cfg: DictConfig) -> bool:
    logger = cfg.get("logger")
    return bool(logger) and str(logger.get("_target_", "")).endswith("WandbLogger")


def global_rank() -> int:
    """This process's rank as launchers set it (torchrun, SLURM); 0 when not distributed."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 0


def start_run(cfg: DictConfig, run_dir: Path) -> Any:
    """Start the job's W&B run (rank 0, `logger=wandb` only) with the secret-free config."""
    if not uses_wandb(cfg) or global_rank() != 0:
        return None
    from hydra.utils import instantiate

    config = scrub(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
    logger = instantiate(cfg.logger, _partial_=True)(save_dir=str(run_dir), config=config)
    argv = sys.argv
    sys.argv = [scrub_text(a) for a in argv]  # W&B records the command line in its metadata
    try:
        run = logger.experiment
    finally:
        sys.argv = argv
    log.info(
        "W&B run %s (group %s, %s)", run.name, run.group, "offline" if run.offline else "online"
    )
    return run


def finish_run(metrics: Mapping[str, Any], run_dir: Path, failed: bool) -> None:
    """Log the stage's final metrics (and the pipeline's eval samples) and finish the W&B run."""
    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    try:
        numbers = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        wandb.run.summary.update(numbers)
        tables = samples_tables(Path(run_dir))
        if tables:
            wandb.run.log(tables)
    finally:
        wandb.finish(exit_code=1 if failed else 0)


def samples_tables(run_dir: Path) -> dict[str, Any]:
    """A W&B table of each `eval/*_results.jsonl` the run wrote (task, code, passed, result)."""
    files = sorted((run_dir / "eval").glob("*_results.jsonl"))
    if not files:
        return {}
    from distill.evaluation.report import wandb_samples_table
    from distill.evaluation.samples import read_jsonl

    return {
        f"eval/{f.name.removesuffix('_results.jsonl')}/samples": wandb_samples_table(read_jsonl(f))
        for f in files
    }
