"""The evaluation stage: generate, post-process, execute and score one model on a benchmark."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill.config import EvalConfig
from distill.evaluation.benchmarks import load_problems
from distill.evaluation.execution import build_program, run_programs
from distill.evaluation.generation import generate
from distill.evaluation.passk import mean_pass_at_k
from distill.evaluation.prompts import (
    POSTPROCESS_VERSION,
    STOP_SEQUENCES,
    build_prompt,
    postprocess,
)

logger = logging.getLogger(__name__)


def validate_eval_config(cfg: Any) -> EvalConfig:
    """Check an evaluation config with the `eval` schema's own checks, loading nothing.

    Args:
        cfg: Object with the attributes read by :func:`evaluate_model` (a DictConfig, the schema,
            or any stand-in).

    Raises:
        ValueError: One line per invalid ``eval.*`` value, with what is allowed.
    """
    values = {f.name: getattr(cfg, f.name) for f in fields(EvalConfig) if hasattr(cfg, f.name)}
    values["k"] = list(values.get("k", [1]))
    return EvalConfig(**values)


def evaluate_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    cfg: Any,
    out_dir: Path,
    label: str,
) -> dict[str, float | int | str]:
    """Evaluate ``model`` on ``cfg.benchmark`` and write human-eval style sample/result files.

    Writes ``<label>_samples.jsonl`` (``task_id``, ``completion``, ``raw``) and
    ``<label>_results.jsonl`` (adding ``passed`` and ``result``) into ``out_dir``, one line per
    sample in task order.

    Args:
        model: Causal LM to evaluate (plain, PEFT-wrapped or quantized).
        tokenizer: Its tokenizer.
        cfg: Evaluation settings: ``benchmark``, ``limit``, ``max_new_tokens``, ``batch_size``,
            ``timeout_s``, ``prompt_format``, ``k``, ``num_samples``, ``temperature``,
            ``top_p``, ``workers``.
        out_dir: Directory for the output files; created if missing.
        label: File-name prefix, e.g. ``"student_final"``.

    Returns:
        ``eval/<benchmark>/pass@<k>`` for each k, ``.../num_problems``, ``.../num_samples``
        (total samples executed) and ``.../postprocess_version``.
    """
    validate_eval_config(cfg)
    if not label or Path(label).name != label:
        raise ValueError(f"label={label!r} must be a plain file-name prefix without '/'.")
    problems = load_problems(cfg.benchmark, cfg.limit)
    prompts = [build_prompt(p, tokenizer, cfg.prompt_format) for p in problems]
    completion_format = cfg.prompt_format == "completion"
    logger.info(
        "Evaluating %s on %d %s problems (%d samples each, %s prompts).",
        label,
        len(problems),
        cfg.benchmark,
        cfg.num_samples,
        cfg.prompt_format,
    )
    raws = generate(
        model,
        tokenizer,
        prompts,
        cfg.max_new_tokens,
        cfg.batch_size,
        num_samples=cfg.num_samples,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        add_special_tokens=completion_format,
        stop_strings=STOP_SEQUENCES if completion_format else None,
    )
    samples = [
        {"task_id": p.task_id, "completion": postprocess(raw, p, cfg.prompt_format), "raw": raw}
        for p, problem_raws in zip(problems, raws, strict=True)
        for raw in problem_raws
    ]
    by_id = {p.task_id: p for p in problems}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_jsonl(out_dir / f"{label}_samples.jsonl", samples)
    programs = [build_program(by_id[s["task_id"]], s["completion"]) for s in samples]
    outcomes = run_programs(programs, cfg.timeout_s, cfg.workers)
    results = [
        {**s, "passed": o.passed, "result": o.result}
        for s, o in zip(samples, outcomes, strict=True)
    ]
    _write_jsonl(out_dir / f"{label}_results.jsonl", results)

    passed = Counter(r["task_id"] for r in results if r["passed"])
    correct = [passed[p.task_id] for p in problems]
    n = [cfg.num_samples] * len(problems)
    prefix = f"eval/{cfg.benchmark}"
    metrics: dict[str, float | int | str] = {
        f"{prefix}/pass@{k}": mean_pass_at_k(n, correct, k) for k in cfg.k
    }
    metrics[f"{prefix}/num_problems"] = len(problems)
    metrics[f"{prefix}/num_samples"] = len(results)
    metrics[f"{prefix}/postprocess_version"] = POSTPROCESS_VERSION
    logger.info("%s: %s", label, ", ".join(f"{k}={v}" for k, v in metrics.items()))
    return metrics


def _write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
