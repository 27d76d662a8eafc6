"""The teacher-cache stage: the white-box teacher's sparse distributions over the training data."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from distill.data.batching.datamodule import encode
from distill.data.cache.builder import CaptureSettings, build_cache
from distill.data.cache.logit_cache import FORMAT_VERSION, cache_dir, expected_manifest
from distill.data.store import DatasetError, read_records
from distill.errors import UserError
from distill.runs import dataset_path, update_metrics
from distill.teachers import gives_logits

log = logging.getLogger(__name__)


def encoded_examples(cfg: DictConfig, run_dir: Path, tokenizer: Any) -> tuple[list[dict], int]:
    """The dataset encoded exactly as training encodes it; (examples with unique ids, dropped)."""
    path = dataset_path(cfg, run_dir)
    if not path.exists():
        raise DatasetError(
            f"dataset {path} does not exist: pass data.dataset=<a dataset.jsonl from "
            "`distill generate`>, or run `distill generate` in this run directory first"
        )
    examples: dict[str, dict] = {}
    dropped = 0
    for record in read_records(path):
        encoded = encode(record, tokenizer, cfg.data.max_length)
        if encoded is None:
            dropped += 1
        elif encoded["id"] not in examples:
            examples[encoded["id"]] = encoded
    return list(examples.values()), dropped


def shared_vocab(cfg: DictConfig, tokenizer: Any, examples: list[dict]) -> int:
    """Preflight (no weights loaded): the tokenizers agree; the logit columns both models share."""
    from transformers import AutoConfig

    from distill.models import load_teacher_tokenizer
    from distill.models.preflight import check_tokenizer_pair
    from distill.models.sources import resolve_model_dir

    def vocab(spec: str) -> int:
        return AutoConfig.from_pretrained(resolve_model_dir(spec)).vocab_size

    used = {i for e in examples for i in e["input_ids"]}
    return check_tokenizer_pair(
        tokenizer,
        load_teacher_tokenizer(cfg.teacher, need_chat=False),  # in its own format
        vocab(cfg.student.path),
        vocab(cfg.teacher.path),
        used_ids=sorted(used),
        names=(f"student={cfg.student.name}", f"teacher={cfg.teacher.name}"),
    )


def capture_device(setting: str) -> str:
    """`teacher_cache.device`: auto is cuda when available, else cpu."""
    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting


def run_teacher_cache(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The `distill teacher-cache` stage; a rerun computes only the shards it lacks.

    The teacher loads its weights only when a shard must be computed.
    """
    from distill.models import load_student_tokenizer, load_teacher

    if not gives_logits(cfg.teacher):
        raise UserError(
            f"teacher={cfg.teacher.name} gives no logits: the teacher cache needs a white-box "
            "teacher, e.g. teacher=embedded_smollm2_135m or teacher=hf teacher.path=<folder>"
        )
    tc = cfg.teacher_cache
    tokenizer = load_student_tokenizer(cfg.student)
    examples, dropped = encoded_examples(cfg, run_dir, tokenizer)
    out = cache_dir(cfg, run_dir)
    manifest = {
        "format": FORMAT_VERSION,
        **expected_manifest(cfg, tokenizer),
        "teacher_name": str(cfg.teacher.name),
        "logp_dtype": str(tc.logp_dtype),
        "seed": int(cfg.seed),
        "dataset": str(dataset_path(cfg, run_dir)),
    }
    vocab = shared_vocab(cfg, tokenizer, examples)
    manifest["vocab_size"] = vocab
    settings = CaptureSettings(
        str(tc.kind),
        int(tc.k),
        int(tc.draws),
        float(tc.temperature),
        str(tc.logp_dtype),
        int(cfg.seed),
        vocab,
    )
    device = capture_device(str(tc.device))
    totals = build_cache(
        lambda: load_teacher(cfg.teacher, device=device),
        examples,
        out,
        manifest,
        settings,
        batch_size=int(tc.batch_size or cfg.teacher.batch_size),
        shard_records=int(tc.shard_records),
        tokenizer=tokenizer,
    )
    log.info(
        "teacher-cache: %d examples (%d computed, %d dropped: prompt fills data.max_length), "
        "%d positions, %.1f MB, %.0f bytes/token, %.1f s -> %s",
        totals["examples"],
        totals["computed"],
        dropped,
        totals["positions"],
        totals["bytes"] / 1e6,
        totals["bytes_per_token"],
        totals["seconds"],
        out,
    )
    metrics = {f"teacher_cache/{k}": v for k, v in totals.items()}
    metrics["teacher_cache/dropped"] = dropped
    return update_metrics(run_dir, metrics)
