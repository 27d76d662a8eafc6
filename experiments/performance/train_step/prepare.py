"""The benchmark's inputs, made once before any arm runs (main venv; nothing here is timed).

- `dataset.jsonl`: MBPP problems as our dataset records (prompt = the problem's text, response =
  its reference code in a fence), for our arms' DistillDataModule.
- `examples.jsonl`: the same training examples, tokenised and cut exactly as our DataModule cuts
  them (chat template, prompt masked, answer cut from the end to `max_length`, at least one prompt
  token kept), for the naive and TRL arms.
- `cache/`: the sparse teacher cache, built by `distill teacher-cache` in its own process.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
MBPP = ROOT.parent / "shared" / "data" / "mbpp" / "mbpp.jsonl"


def mbpp_records(path: Path) -> list[dict[str, Any]]:
    """MBPP rows as dataset records: id, a one-turn user prompt, the reference code as answer."""
    records = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        code = row["code"].replace("\r\n", "\n").strip()
        records.append(
            {
                "id": f"mbpp-{row['task_id']}",
                "messages": [{"role": "user", "content": row["text"]}],
                "response": f"```python\n{code}\n```",
            }
        )
    return records


def select(
    records: list[dict], tokenizer: Any, cfg: Any, n_train: int, n_val: int, seed: int
) -> tuple[list[dict], list[dict], list[dict]]:
    """(train records, their encoded examples, validation records): the first `n_train` records,
    in a seeded shuffle, that our DataModule keeps for training, and `n_val` it holds out."""
    from distill.data.batching.datamodule import encode
    from distill.data.store import is_validation

    order = list(records)
    random.Random(seed).shuffle(order)
    train, encoded, val = [], [], []
    for record in order:
        example = encode(record, tokenizer, cfg.data.max_length)
        if example is None:
            continue
        if is_validation(record["id"], cfg.data.val_fraction):
            if len(val) < n_val:
                val.append(record)
        elif len(train) < n_train:
            train.append(record)
            encoded.append({"input_ids": example["input_ids"], "labels": example["labels"]})
        if len(train) == n_train and len(val) == n_val:
            return train, encoded, val
    raise SystemExit(
        f"only {len(train)} of {n_train} training examples fit data.max_length="
        f"{cfg.data.max_length}: lower --steps/--warmup/--batch-size or give more MBPP rows"
    )


def write_inputs(work: Path, cfg: Any, tokenizer: Any, mbpp: Path, n_train: int, seed: int) -> dict:
    """Write dataset.jsonl and examples.jsonl; return their token statistics."""
    train, encoded, val = select(mbpp_records(mbpp), tokenizer, cfg, n_train, 4, seed)
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "dataset.jsonl", "w") as f:
        for record in train + val:
            f.write(json.dumps(record) + "\n")
    with open(work / "examples.jsonl", "w") as f:
        for example in encoded:
            f.write(json.dumps(example) + "\n")
    lengths = [len(e["input_ids"]) for e in encoded]
    scored = [sum(label != -100 for label in e["labels"][1:]) for e in encoded]
    return {
        "examples": len(encoded),
        "mean_tokens": sum(lengths) / len(lengths),
        "max_tokens": max(lengths),
        "mean_scored": sum(scored) / len(scored),
    }


def model_dirs(cfg: Any) -> tuple[str, str]:
    """(student folder, pruned to keep_layers as ours loads it; teacher folder)."""
    from distill.models.loading import pruned_model_dir
    from distill.models.sources import resolve_model_dir

    student = resolve_model_dir(cfg.student.path)
    if cfg.student.keep_layers is not None:
        student = pruned_model_dir(student, list(cfg.student.keep_layers))
    return student, resolve_model_dir(cfg.teacher.path)


def build_cache(work: Path, overrides: list[str], env: dict) -> None:
    """The sparse teacher cache of dataset.jsonl, by `distill teacher-cache` in a child process."""
    command = [
        sys.executable,
        "-m",
        "distill",
        "teacher-cache",
        *overrides,
        f"teacher_cache.path={work / 'cache'}",
        f"hydra.run.dir={work / 'cache_run'}",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"distill teacher-cache failed:\n{done.stderr[-3000:]}")
