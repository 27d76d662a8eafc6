"""The export stage: a trained student as a Hugging Face folder that loads without distill.

`distill export export.run=<train or pipeline run>` writes `<run dir>/model/`: `config.json` and
`model.safetensors` (the adapters merged into the dequantized base, in `export.dtype`), the
tokenizer with the chat template the student trained with, `generation_config.json`, a model card
(`README.md`), `export.json` (provenance and the checks) and, with `export.gguf=[f16, q8_0]`,
GGUF files and an Ollama `Modelfile`. The folder is written under a
`.partial` name and renamed only when complete, so a failed export never looks finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from distill.data.batching.datamodule import DistillDataModule
from distill.data.store import read_records
from distill.errors import UserError
from distill.evaluation.harness import evaluate_model, validate_eval_config
from distill.evaluation.heldout import heldout_scores
from distill.evaluation.samples import eval_files, read_jsonl
from distill.evaluation.scoring import per_problem_pass
from distill.export.card import model_card, read_report
from distill.export.gguf import export_ggufs
from distill.export.merge import merged_student, trained_student
from distill.export.ollama import default_system, modelfile
from distill.models.cache import file_sha256
from distill.runs import adapters_dir, dataset_path, update_metrics

log = logging.getLogger(__name__)


def export_source(cfg: DictConfig) -> tuple[Path, DictConfig, Path | None]:
    """(adapters folder, the config they were trained with, the source run directory or None).

    With `export.run`, the run's own `.hydra/config.yaml` says which student, data and loss it
    trained (this command's `student` is ignored); with `export.adapters`, this config does.
    """
    if cfg.export.run is None:
        return Path(cfg.export.adapters), cfg, None
    run = Path(cfg.export.run)
    saved = run / ".hydra" / "config.yaml"
    if not saved.is_file():
        raise UserError(
            f"export.run={run} has no .hydra/config.yaml (not a distill run directory): give "
            "the adapters folder as export.adapters=<folder> with the student= it was trained with"
        )
    return adapters_dir(run), OmegaConf.load(saved), run


def run_export(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Merge, check, write the folder and its card; return the `export/...` metrics."""
    start = time.perf_counter()
    adapters, source, source_run = export_source(cfg)
    out = Path(cfg.export.out) if cfg.export.out else Path(run_dir) / "model"
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # a previous export that failed half-way
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(adapters))  # saved beside them, with its format
    merged = merged_student(source.student, adapters, cfg.export.dtype)
    check = None
    if cfg.export.check:
        check = merge_check(source, source_run, adapters, merged, tokenizer, cfg.export, run_dir)
    merged.generation_config.pad_token_id = tokenizer.pad_token_id
    merged.generation_config.eos_token_id = tokenizer.eos_token_id
    merged.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    gguf = {}
    if cfg.export.gguf:
        gguf = export_ggufs(partial, list(cfg.export.gguf), str(source.student.name))
        first = gguf.get("q8_0", next(iter(gguf.values())))["file"]
        system = default_system(tokenizer)
        text = modelfile(first, tokenizer.chat_template, str(tokenizer.eos_token), system)
        (partial / "Modelfile").write_text(text)
    record = provenance(cfg, source, adapters, source_run, check)
    record["gguf"] = gguf
    records = list(read_records(dataset_path(source, source_run))) if source_run else []
    metrics = _read_metrics(source_run)
    card = model_card(
        source, records, metrics, read_report(source_run) if source_run else None, record
    )
    (partial / "README.md").write_text(card)
    (partial / "export.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    log.info("exported %s -> %s (%s)", adapters, out, cfg.export.dtype)
    result: dict[str, Any] = {"export/out": str(out), "export/dtype": cfg.export.dtype}
    result.update({f"export/check/{k}": v for k, v in (check or {}).items()})
    for kind, measured in gguf.items():
        result.update({f"export/gguf/{kind}/{k}": v for k, v in measured.items() if k != "file"})
    result["export/seconds"] = time.perf_counter() - start
    if check:
        log.info("merge check:\n%s", check_table(check))
    return update_metrics(run_dir, result)


def merge_check(
    source: DictConfig,
    source_run: Path | None,
    adapters: Path,
    merged: Any,
    tokenizer: Any,
    export: DictConfig,
    run_dir: Path,
) -> dict[str, Any] | None:
    """The merged model against the adapters on the base as trained: each one's cross-entropy on
    held-out answers and how often their next tokens agree, then (`export.check_problems`) each
    one's pass@1 on the run's own benchmark."""
    trained = trained_student(source.student, adapters)
    check: dict[str, Any] = {}
    if source_run is not None and dataset_path(source, source_run).exists():
        check.update(heldout_check(source, source_run, trained, merged, tokenizer, export))
    else:
        log.warning("export.check: no dataset beside the adapters; held-out CE is not checked")
    if export.check_problems:
        check.update(pass_check(source, trained, merged, tokenizer, export, run_dir / "check"))
    return check or None


def heldout_check(
    source: DictConfig,
    source_run: Path,
    trained: Any,
    merged: Any,
    tokenizer: Any,
    export: DictConfig,
) -> dict[str, Any]:
    data = DistillDataModule(
        dataset_path(source, source_run),
        tokenizer,
        max_length=source.data.max_length,
        batch_size=4,
        val_fraction=source.data.val_fraction,
        seed=source.seed,
        quality=source.data,
    )
    data.setup("fit")
    data.val_set = data.val_set[: export.check_examples]
    batches = list(data.val_dataloader())
    as_trained = heldout_scores(trained, None, batches)
    exported = heldout_scores(merged, trained, batches)
    return {
        "tokens": as_trained["tokens"],
        "ce_adapters": as_trained["ce"],
        "ce_merged": exported["ce"],
        "top1_agreement": exported["top1_agreement"],
    }


def pass_check(
    source: DictConfig, trained: Any, merged: Any, tokenizer: Any, export: DictConfig, out: Path
) -> dict[str, Any]:
    """Both models on the problems the run scored (its `eval` benchmark and prompt format; the
    first `export.check_problems` of them), greedy: pass@1 of each, and on how many problems the
    verdicts and the generated text are the same (samples and results are kept under `out`)."""
    limit = min(export.check_problems, source.eval.limit or export.check_problems)
    ecfg = validate_eval_config(source.eval, limit=limit, num_samples=1, k=[1])
    passed, raw = {}, {}
    for label, model in (("adapters", trained), ("merged", merged)):
        evaluate_model(model, tokenizer, ecfg, out, label)
        files = eval_files(out, label, ecfg.benchmark)
        passed[label] = per_problem_pass(read_jsonl(files.results))
        raw[label] = {row["task_id"]: row["raw"] for row in read_jsonl(files.samples)}
    tasks = sorted(passed["adapters"])
    return {
        "benchmark": ecfg.benchmark,
        "problems": len(tasks),
        "pass@1_adapters": sum(passed["adapters"].values()) / len(tasks),
        "pass@1_merged": sum(passed["merged"].get(t, 0.0) for t in tasks) / len(tasks),
        "same_verdicts": sum(passed["adapters"][t] == passed["merged"].get(t) for t in tasks),
        "same_samples": sum(raw["adapters"][t] == raw["merged"].get(t) for t in tasks),
    }


def check_table(check: dict[str, Any]) -> str:
    lines = [
        "| model | held-out CE (nats/token) | next-token agreement | pass@1 |",
        "|---|---|---|---|",
    ]
    ce = "ce_adapters" in check
    score = "problems" in check
    rows = (("adapters on the base as trained", "adapters"), ("exported (merged)", "merged"))
    for name, key in rows:
        cells = [
            f"{check[f'ce_{key}']:.4f}" if ce else "-",
            f"{check['top1_agreement']:.2%}" if ce and key == "merged" else "-",
            f"{check[f'pass@1_{key}']:.1%}" if score else "-",
        ]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    lines.append("")
    if ce:
        lines.append(f"{check['tokens']} held-out answer tokens")
    if score:
        lines.append(
            f"{check['problems']} {check['benchmark']} problems (greedy): same verdict on "
            f"{check['same_verdicts']}, same generated text on {check['same_samples']}"
        )
    return "\n".join(lines)


def provenance(
    cfg: DictConfig,
    source: DictConfig,
    adapters: Path,
    source_run: Path | None,
    check: dict[str, Any] | None,
) -> dict[str, Any]:
    """What `export.json` records: where the model came from and what was checked."""
    weights = adapters / "adapter_model.safetensors"
    config_text = OmegaConf.to_yaml(source, resolve=False)
    return {
        "source_run": str(source_run) if source_run else None,
        "adapters": str(adapters),
        "adapters_sha256": file_sha256(weights) if weights.is_file() else None,
        "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
        "student": str(source.student.path),
        "quantization": source.student.quantization,
        "dtype": cfg.export.dtype,
        "distill_commit": _commit(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "check": check,
    }


def _commit() -> str | None:
    """The commit of the distill checkout this runs from (None outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _read_metrics(run: Path | None) -> dict[str, Any]:
    path = Path(run) / "metrics.json" if run else None
    return json.loads(path.read_text()) if path and path.is_file() else {}
