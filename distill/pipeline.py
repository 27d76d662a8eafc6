"""The pipeline: generate, train and eval in one run directory, ending with a before/after table."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from distill.baselines import baseline_key, load_baselines, store_baselines
from distill.data.app import run_generate
from distill.evaluation.harness import evaluate_model
from distill.evaluation.heldout import heldout_scores
from distill.evaluation.report import comparison_table, paired_comparison
from distill.evaluation.samples import eval_files, read_jsonl
from distill.evaluation.scoring import per_problem_pass
from distill.hardware import inference_device
from distill.runs import update_metrics
from distill.training.app import build_training, fit

log = logging.getLogger(__name__)


def score(
    model, teacher, tokenizer, val_batches, cfg: DictConfig, run_dir: Path, label: str
) -> dict[str, Any]:
    """Held-out CE and agreement plus the benchmark score of one model, on the device `hardware`
    names (the Trainer leaves the module on the CPU when it ends)."""
    device = inference_device(cfg.hardware)
    for each in (model, teacher):
        if each is not None:
            each.to(device)
    scores = heldout_scores(model, teacher, val_batches)
    scores.update(evaluate_model(model, tokenizer, cfg.eval, run_dir / "eval", label))
    results = eval_files(run_dir / "eval", label, cfg.eval.benchmark).results
    scores["per_problem"] = per_problem_pass(read_jsonl(results))
    log.info("%s: %s", label, {k: v for k, v in scores.items() if isinstance(v, float)})
    return scores


def baseline_rows(cfg: DictConfig, module, tokenizer, val_batches, run_dir: Path) -> dict:
    """The teacher's and the untrained student's scores, read from `baselines` when an earlier
    arm of the sweep stored them (see distill/baselines.py)."""
    folder = cfg.get("baselines")
    key = baseline_key(cfg, module.student, val_batches) if folder else None
    if folder and (stored := load_baselines(folder, key)) is not None:
        log.info("teacher and untrained student: scores read from %s/%s.json", folder, key)
        return stored
    rows: dict[str, dict[str, Any]] = {}
    if module.teacher is not None:
        rows["teacher"] = score(
            module.teacher, module.teacher, tokenizer, val_batches, cfg, run_dir, "teacher"
        )
    # LoRA's B matrices start at zero, so the untrained student is exactly the base model.
    rows["student before"] = score(
        module.student, module.teacher, tokenizer, val_batches, cfg, run_dir, "student_before"
    )
    if folder:
        log.info("baseline scores stored in %s", store_baselines(folder, key, rows))
    return rows


class StageClock:
    """Wall time per stage: ``with clock("train"): ...`` adds to ``clock.seconds["train"]``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._stage = ""

    def __call__(self, stage: str) -> StageClock:
        self._stage = stage
        return self

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        took = time.perf_counter() - self._start
        self.seconds[self._stage] = self.seconds.get(self._stage, 0.0) + took


def cost_line(seconds: dict[str, float], trained: dict[str, Any]) -> str:
    """What the run cost, in one line under the table."""
    stages = ", ".join(f"{stage} {t:.0f} s" for stage, t in seconds.items())
    line = f"Cost: {stages}; {sum(seconds.values()) / 60:.1f} min in all."
    if "train/tokens_per_s" in trained:
        line += (
            f" Training: {trained['train/tokens_per_s']:.0f} tokens/s, "
            f"{trained['train/step_s']:.2f} s/step, peak memory "
            f"{trained['train/peak_memory_mib']:,.0f} MiB."
        )
    return line


def run_pipeline(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run the three stages; score the teacher, the student before and the student after."""
    run_dir = Path(run_dir)
    clock = StageClock()
    with clock("generate"):
        run_generate(cfg, run_dir)
    with clock("load"):
        setup = build_training(cfg, run_dir)
    module, tokenizer = setup.module, setup.datamodule.tokenizer
    val_batches = list(setup.datamodule.val_dataloader())
    with clock("baselines"):
        rows = baseline_rows(cfg, module, tokenizer, val_batches, run_dir)
    with clock("train"):
        trained = fit(setup, run_dir)
    with clock("eval"):
        rows["student after"] = score(
            module.student, module.teacher, tokenizer, val_batches, cfg, run_dir, "student_after"
        )
    benchmark = cfg.eval.benchmark
    paired = paired_comparison(
        rows["student after"]["per_problem"],
        rows["student before"]["per_problem"],
        ("student after", "student before"),
    )
    cost = cost_line(clock.seconds, trained)
    table = f"{comparison_table(rows, benchmark)}\n\n{paired.pop('text')}\n\n{cost}"
    rows["after vs before"] = paired
    (run_dir / "report.md").write_text(f"# distill pipeline: {run_dir.name}\n\n{table}\n")
    log.info(
        "results on %d %s problems and %d held-out answer tokens:\n%s",
        rows["student after"].get(f"eval/{benchmark}/num_problems", 0),
        benchmark,
        rows["student after"]["tokens"],
        table,
    )
    flat = {
        f"pipeline/{row.replace(' ', '_')}/{key}": value
        for row, scores in rows.items()
        for key, value in scores.items()
        if isinstance(value, int | float)
    }
    flat.update({k: v for k, v in rows["student after"].items() if k.startswith("eval/")})
    flat.update({f"pipeline/seconds/{stage}": t for stage, t in clock.seconds.items()})
    return update_metrics(run_dir, flat)
