"""Build the sparse teacher logit cache: one batched teacher pass over the encoded dataset.

Shards are written to a temporary folder and renamed, and the index is written last, so a build
that is killed resumes at the first shard it had not finished. The format is described in
`distill.data.cache.logit_cache`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill.data.batching.datamodule import IGNORE_INDEX, collate
from distill.data.cache.logit_cache import (
    INDEX,
    MANIFEST,
    MATCH_FIELDS,
    CacheError,
    manifest_differences,
    write_json,
)

log = logging.getLogger(__name__)
# Positions whose full-vocabulary logits are held at once (fp32): about 128 MiB.
CHUNK_ELEMENTS = 1 << 25
# A shard folder's name; only such folders are ever removed from a cache folder.
SHARD_PREFIX = "shard-"


@dataclass
class CaptureSettings:
    """What is kept of each teacher distribution (see `LogitCacheConfig`)."""

    kind: str = "topk"
    k: int = 64
    draws: int = 64
    temperature: float = 1.0
    logp_dtype: str = "float16"
    seed: int = 0
    vocab: int | None = None  # logit columns kept (the range teacher and student share); None: all


def sparsify(
    logits: torch.Tensor, s: CaptureSettings, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """The sparse form of the teacher distributions softmax(logits / temperature).

    Args:
        logits: (N, V) teacher logits of N scored positions; only the first `s.vocab` count.
        s: kind, k or draws, temperature, vocab.
        generator: for `kind="sampled"`, on the logits' device.

    Returns:
        topk: ids/val (N*k,) (val = log-probabilities), tail (N,), entropy (N,).
        sampled: ids/val (S,) (val = draw counts, unique ids of a position sorted), width (N,),
        entropy (N,).
    """
    logp = F.log_softmax(logits[:, : s.vocab].float() / s.temperature, dim=-1)
    # p * logp with p = 0 must give 0, not nan, where logp underflows to -inf.
    entropy = -(logp.exp() * logp.clamp(min=torch.finfo(logp.dtype).min)).sum(-1)
    if s.kind == "topk":
        val, ids = logp.topk(min(s.k, logp.shape[-1]), dim=-1)
        tail = torch.logsumexp(logp.scatter(-1, ids, -torch.inf), dim=-1)
        return {"ids": ids.flatten(), "val": val.flatten(), "tail": tail, "entropy": entropy}
    draws = torch.multinomial(logp.exp(), s.draws, replacement=True, generator=generator)
    draws = draws.sort(dim=-1).values
    first = torch.ones_like(draws, dtype=torch.bool)
    first[:, 1:] = draws[:, 1:] != draws[:, :-1]
    run = first.flatten().cumsum(0) - 1  # runs of equal ids never cross rows: column 0 starts one
    counts = torch.bincount(run)
    return {"ids": draws[first], "val": counts, "width": first.sum(-1), "entropy": entropy}


def padded(examples: list[dict], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    """(B, T) input_ids, attention_mask and labels, right-padded as training collates them."""
    batch = collate(examples, pad_id)
    return {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "labels")}


def scored_hidden(
    model: PreTrainedModel, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's last hidden state at the scored positions of a batch.

    Args:
        model: a causal LM whose logits are its output embedding of the decoder's last state.
        batch: collated (B, T) input_ids, attention_mask, labels.

    Returns:
        (hidden (N, H) at scored positions, row-major; positions per row (B,)).
    """
    hidden = model.get_decoder()(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
    ).last_hidden_state
    scored = batch["labels"][:, 1:] != IGNORE_INDEX
    return hidden[:, :-1][scored], scored.sum(-1)


def check_head(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> None:
    """Refuse a teacher whose logits are not lm_head(last hidden state) (soft-capping, scaling)."""
    one = {k: v[:1] for k, v in batch.items()}
    dense = model(input_ids=one["input_ids"], attention_mask=one["attention_mask"]).logits[0]
    hidden = model.get_decoder()(**{k: one[k] for k in ("input_ids", "attention_mask")})
    head = model.get_output_embeddings()(hidden.last_hidden_state)[0]
    tol = 1e-3 if dense.dtype == torch.float32 else 3e-2  # bf16/fp16: rounding, not a bug
    if not torch.allclose(dense.float(), head.float(), atol=tol, rtol=tol):
        raise CacheError(
            f"teacher {type(model).__name__}: its logits are not its output embedding applied to "
            "the last hidden state (logit soft-capping or scaling), which the cache builder "
            "assumes; use the online teacher (no teacher cache) for this model"
        )


STORED = {"topk": ("ids", "val", "tail", "entropy"), "sampled": ("ids", "val", "width", "entropy")}


def to_storage(parts: list[dict[str, torch.Tensor]], s: CaptureSettings, vocab: int) -> dict:
    """Concatenate per-chunk results into the shard's arrays, in their storage dtypes."""
    small = s.draws <= 255
    dtypes = {
        "ids": np.uint16 if vocab <= 1 << 16 else np.int32,
        "val": np.dtype(s.logp_dtype) if s.kind == "topk" else (np.uint8 if small else np.uint16),
        "width": np.uint8 if small else np.uint16,
        "tail": np.float32,
        "entropy": np.float32,
    }
    return {
        key: np.concatenate(
            [np.zeros(0, dtypes[key])] + [p[key].cpu().numpy().astype(dtypes[key]) for p in parts]
        )
        for key in STORED[s.kind]
    }


@torch.inference_mode()
def capture_shard(
    model: PreTrainedModel,
    examples: list[dict],
    s: CaptureSettings,
    batch_size: int,
    pad_id: int,
    progress: tqdm,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, list[int]]]:
    """The arrays of one shard and each record's [first position, positions, first slot].

    Examples run shortest first, `batch_size` at a time, so little compute goes to padding.
    """
    device = next(model.parameters()).device
    head = model.get_output_embeddings()
    vocab = s.vocab or head.weight.shape[0]
    chunk = max(1, CHUNK_ELEMENTS // vocab)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    parts: list[dict[str, torch.Tensor]] = []
    entries: dict[str, list[int]] = {}
    p0 = f0 = 0
    for start in range(0, len(order), batch_size):
        group = [examples[i] for i in order[start : start + batch_size]]
        batch = padded(group, pad_id, device)
        hidden, per_row = scored_hidden(model, batch)
        found = [sparsify(head(h), s, generator) for h in hidden.split(chunk)]
        parts += found
        if s.kind == "sampled":
            widths = torch.cat(
                [f["width"] for f in found] + [torch.zeros(0, dtype=torch.long, device=device)]
            )
        else:
            widths = torch.full((len(hidden),), min(s.k, vocab))
        slots = torch.cat([torch.zeros(1), widths.cpu().double().cumsum(0)]).long().tolist()
        local = 0
        for example, n in zip(group, per_row.tolist(), strict=True):
            entries[example["id"]] = [p0 + local, n, f0 + slots[local]]
            local += n
        p0, f0 = p0 + local, f0 + slots[local]
        progress.update(len(group))
    return to_storage(parts, s, vocab), entries


def _fsync_tree(folder: Path) -> None:
    for file in folder.iterdir():
        with open(file, "rb") as f:
            os.fsync(f.fileno())


def write_shard(
    out_dir: Path, name: str, ids: list[str], arrays: dict[str, np.ndarray], entries: dict
) -> None:
    """Write one shard into a temporary folder, then rename it into place."""
    tmp = out_dir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for key, array in arrays.items():
        np.save(tmp / f"{key}.npy", array)
    write_json(tmp / "records.json", {"ids": ids, "entries": entries})
    _fsync_tree(tmp)
    final = out_dir / name
    if final.exists():  # a shard of an older dataset state: its records changed
        shutil.rmtree(final)
    tmp.rename(final)


def shard_done(folder: Path, ids: list[str]) -> bool:
    """Whether `folder` is a finished shard of exactly the records `ids`."""
    records = folder / "records.json"
    return records.exists() and json.loads(records.read_text())["ids"] == ids


def prepare(out_dir: Path, manifest: dict[str, Any]) -> None:
    """Create the cache folder or check that the one there was started with the same settings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MANIFEST
    if path.exists():
        found = json.loads(path.read_text())
        build_fields = {k: manifest.get(k) for k in (*MATCH_FIELDS, "format", "logp_dtype")}
        problems = manifest_differences(found, build_fields)
        if problems:
            raise CacheError(
                f"teacher_cache.path={out_dir} holds a teacher cache built with other settings ("
                + "; ".join(problems)
                + "): delete that folder, or set teacher_cache.path to another folder"
            )
    else:
        write_json(path, manifest)
    (out_dir / INDEX).unlink(missing_ok=True)  # unfinished until the index is written again


def write_index(out_dir: Path, names: list[str]) -> dict[str, Any]:
    """Merge the shards' entries into index.json (atomically); returns totals."""
    records: dict[str, list[int]] = {}
    positions = size = 0
    for i, name in enumerate(names):
        entries = json.loads((out_dir / name / "records.json").read_text())["entries"]
        for rid, (p0, n, f0) in entries.items():
            records[rid] = [i, p0, n, f0]
            positions += n
        size += sum(f.stat().st_size for f in (out_dir / name).glob("*.npy"))
    for stale in out_dir.glob(f"{SHARD_PREFIX}*"):  # shards of records no longer in the dataset
        if stale.is_dir() and stale.name not in names:
            shutil.rmtree(stale)
    write_json(out_dir / INDEX, {"shards": names, "records": records})
    return {"positions": positions, "bytes": size}


def check_k(model: PreTrainedModel, s: CaptureSettings) -> None:
    vocab = s.vocab or model.get_output_embeddings().weight.shape[0]
    if s.kind == "topk" and s.k > vocab:
        raise CacheError(f"teacher_cache.k={s.k} exceeds the {vocab} logit columns: lower it")


def build_cache(
    load: Callable[[], PreTrainedModel],
    examples: list[dict],
    out_dir: Path,
    manifest: dict[str, Any],
    s: CaptureSettings,
    batch_size: int,
    shard_records: int,
    tokenizer: PreTrainedTokenizerBase,
) -> dict[str, Any]:
    """Build (or finish, or extend) the cache of `examples` in `out_dir`.

    Args:
        load: returns the teacher on its device; called only when a shard must be computed.
        examples: encoded records (`datamodule.encode`): id, input_ids, labels; unique ids.
        out_dir: the cache folder.
        manifest: written to manifest.json (see `logit_cache.expected_manifest`).
        s: what to keep of each distribution.
        batch_size: examples per teacher forward.
        shard_records: examples per shard (the unit of resume).
        tokenizer: the tokenizer the examples were encoded with (pad id, size).

    Returns:
        Totals: examples, computed, positions, bytes, bytes_per_token, shards, seconds.
    """
    started = time.perf_counter()
    prepare(out_dir, manifest)
    plan = [
        (f"{SHARD_PREFIX}{i:05d}", examples[start : start + shard_records])
        for i, start in enumerate(range(0, len(examples), shard_records))
    ]
    todo = [
        (i, name, group)
        for i, (name, group) in enumerate(plan)
        if not shard_done(out_dir / name, [e["id"] for e in group])
    ]
    if todo:
        model = load()
        device = next(model.parameters()).device
        check_k(model, s)
        with torch.inference_mode():
            check_head(model, padded(todo[0][2][:1], tokenizer.pad_token_id, device))
        progress = tqdm(total=sum(len(g) for *_, g in todo), unit="example", desc="teacher-cache")
        for i, name, group in todo:
            # One seed per shard: a resumed build draws what an uninterrupted one would have.
            gen = torch.Generator(device).manual_seed(s.seed * 100_003 + i)
            arrays, entries = capture_shard(
                model, group, s, batch_size, tokenizer.pad_token_id, progress, gen
            )
            write_shard(out_dir, name, [e["id"] for e in group], arrays, entries)
        progress.close()
    totals = write_index(out_dir, [name for name, _ in plan])
    return {
        "examples": len(examples),
        "computed": sum(len(g) for *_, g in todo),
        "positions": totals["positions"],
        "bytes": totals["bytes"],
        "bytes_per_token": totals["bytes"] / max(totals["positions"], 1),
        "shards": len(plan),
        "seconds": time.perf_counter() - started,
    }
