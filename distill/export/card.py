"""The model card of an exported student: Hugging Face's README format, YAML metadata first.

Everything in it is read from the source run (its config, dataset, metrics and report) or from
the export's own check; nothing is typed in by hand.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf

# Licenses of the students distill ships configs for, by the start of `student.path`.
KNOWN_LICENSES = {
    "embedded:qwen2.5-coder": "apache-2.0",
    "embedded:smollm2": "apache-2.0",
    "codellama/": "llama2",
    "tiny:": "apache-2.0",
}
ANTHROPIC_NOTE = (
    "The training answers were written by Claude through the Anthropic API. Using them to train "
    "a model is subject to Anthropic's terms of service (in particular its restrictions on "
    "building competing models); check that your use complies before you share this model."
)


def base_license(student: DictConfig) -> str:
    """The base model's license id where distill knows it, else ``other``."""
    path = str(student.path)
    return next((lic for start, lic in KNOWN_LICENSES.items() if path.startswith(start)), "other")


def data_counts(records: list[dict[str, Any]]) -> str:
    """A table of the training records per language and task kind."""
    counts = Counter((r.get("language", "?"), r.get("task_kind", "?")) for r in records)
    if not counts:
        return "No dataset was found beside the run."
    lines = ["| language | task kind | records |", "|---|---|---|"]
    lines += [f"| {lang} | {kind} | {n} |" for (lang, kind), n in sorted(counts.items())]
    return "\n".join(lines)


def model_card(
    source: DictConfig,
    records: list[dict[str, Any]],
    metrics: Mapping[str, Any],
    report: str | None,
    export: Mapping[str, Any],
) -> str:
    """The card's Markdown.

    Args:
        source: The source run's config (student, teacher, data, loss, train).
        records: The training dataset's records (counted by language and kind).
        metrics: The source run's ``metrics.json``.
        report: The source run's ``report.md`` (the pipeline's before/after table), if any.
        export: What :func:`distill.export.app.run_export` records in ``export.json``.
    """
    student, teacher = source.student, source.teacher
    claude = str(teacher.get("kind", "")) == "claude" or "claude" in str(teacher.get("name", ""))
    meta = {
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "license": base_license(student),
        "base_model": str(student.path),
        "tags": ["distill", "knowledge-distillation", "code", "lora-merged"],
    }
    loss = OmegaConf.to_container(source.loss.components, resolve=True)
    quality = source.data.quality
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False).strip(),
        "---",
        "",
        f"# {student.name} distilled from {teacher.name}",
        "",
        f"A student distilled with distill: `{student.path}`"
        + (f" pruned to layers {list(student.keep_layers)}" if student.keep_layers else "")
        + (f", trained in 4-bit {student.quantization} with LoRA" if student.quantization else "")
        + f" (r={student.lora.r}, alpha={student.lora.alpha}), the adapters merged into the "
        f"{'dequantized ' if student.quantization else ''}base and saved in {export['dtype']}.",
        "",
        "## Training data",
        "",
        f"{len(records)} answers of the teacher `{teacher.name}` to the instruction mixture "
        f"`{source.data.name}`, after quality control (syntax, compile and test checks, dedup).",
        "",
        data_counts(records),
        "",
        "Decontamination: "
        + (
            f"{quality.decontam_ngram}-gram overlap >= {quality.decontam_threshold} with "
            f"{', '.join(quality.benchmarks)}."
            if quality.decontaminate
            else "off."
        ),
        "",
        "## Objective and settings",
        "",
        f"Loss components: `{json.dumps(loss)}`. {source.train.max_steps} steps, batch "
        f"{source.data.batch_size}, learning rate {source.train.optimizer.get('lr')}, seed "
        f"{source.seed}.",
        "",
        "## Evaluation",
        "",
        report.strip() if report else _eval_lines(metrics),
        "",
        "## Export check",
        "",
        _check_lines(export.get("check")),
        "",
        "## Licenses",
        "",
        f"The base model's license: `{meta['license']}`. Benchmarks used for evaluation and "
        "decontamination (HumanEval, MBPP, EvalPlus, MultiPL-E) were not trained on.",
    ]
    if claude:
        lines += ["", ANTHROPIC_NOTE]
    lines += ["", "Provenance: `export.json` (config hash, commit, adapters' hash, checks).", ""]
    return "\n".join(lines)


def _eval_lines(metrics: Mapping[str, Any]) -> str:
    keys = sorted(k for k in metrics if k.endswith("/pass@1") and k.startswith("eval/"))
    if not keys:
        return "The source run has no evaluation."
    return "\n".join(f"- `{k}`: {metrics[k]:.1%}" for k in keys)


def _check_lines(check: Mapping[str, Any] | None) -> str:
    if not check:
        return "Not run (`export.check=false`, or no held-out data beside the run)."
    lines = []
    if "ce_merged" in check:
        lines.append(
            f"On {check['tokens']} held-out answer tokens: cross-entropy "
            f"{check['ce_adapters']:.4f} (adapters on the base as trained) vs "
            f"{check['ce_merged']:.4f} (this model); the two agree on the next token at "
            f"{check['top1_agreement']:.2%} of positions."
        )
    if "problems" in check:
        lines.append(
            f"On {check['problems']} {check['benchmark']} problems, greedy: pass@1 "
            f"{check['pass@1_adapters']:.1%} (adapters on the base as trained) vs "
            f"{check['pass@1_merged']:.1%} (this model); the same verdict on "
            f"{check['same_verdicts']} problems, the same generated text on "
            f"{check['same_samples']}."
        )
    return "\n\n".join(lines)


def read_report(run: Path) -> str | None:
    path = Path(run) / "report.md"
    return path.read_text() if path.is_file() else None
