"""The sparse teacher logit cache against the dense teacher, its manifest, resume, and the CLI."""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from transformers import AutoModelForCausalLM

from distill.cli import CONF_DIR, register_hydra
from distill.data.batching.datamodule import IGNORE_INDEX, encode
from distill.data.cache.app import run_teacher_cache
from distill.data.cache.builder import CaptureSettings, build_cache, padded, sparsify
from distill.data.cache.logit_cache import CacheError, LogitCache, expected_manifest
from distill.models import load_tokenizer
from distill.testing import tiny_model_dir

TEMPERATURE = 2.0
MAX_LENGTH = 96


def record(i: int) -> dict:
    body = "".join(f"    x{j} = {i} * {j}\n" for j in range(i + 1))
    return {
        "id": f"r{i:03d}",
        "messages": [{"role": "user", "content": f"Write f{i}."}],
        "response": f"def f{i}():\n{body}    return x0",
    }


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny:student")


@pytest.fixture(scope="module")
def examples(tokenizer):
    # The last records are longer than MAX_LENGTH: their answers are cut, as training cuts them.
    return [encode(record(i), tokenizer, MAX_LENGTH) for i in range(7)]


def load():
    return AutoModelForCausalLM.from_pretrained(tiny_model_dir("teacher")).eval()


def manifest(s: CaptureSettings) -> dict:
    return {"kind": s.kind, "k": s.k, "draws": s.draws, "temperature": s.temperature}


def build(path, examples, tokenizer, teacher=load, shard_records=3, **settings) -> dict:
    s = CaptureSettings(temperature=TEMPERATURE, **settings)
    return build_cache(teacher, examples, path, manifest(s), s, 2, shard_records, tokenizer)


def dense(examples, tokenizer):
    """(batch, teacher log-probs (B, T, V) at TEMPERATURE, scored mask (B, T))."""
    batch = padded(examples, tokenizer.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        logits = load()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    scored = torch.zeros_like(batch["labels"], dtype=torch.bool)
    scored[:, :-1] = batch["labels"][:, 1:] != IGNORE_INDEX
    return batch, F.log_softmax(logits / TEMPERATURE, dim=-1), scored


@pytest.mark.parametrize(("dtype", "tol"), [("float32", 1e-5), ("float16", 4e-3)])
def test_topk_matches_the_dense_teacher(tmp_path, examples, tokenizer, dtype, tol):
    totals = build(tmp_path, examples, tokenizer, kind="topk", k=8, logp_dtype=dtype)
    assert totals["examples"] == totals["computed"] == 7 and totals["shards"] == 3
    batch, logp, scored = dense(examples, tokenizer)
    got = LogitCache.open(tmp_path).batch([e["id"] for e in examples], batch["labels"])
    assert got.ids.shape == (7, batch["labels"].shape[1], 8) and got.kind == "topk"
    assert got.temperature == TEMPERATURE
    top_logp, top_ids = logp.topk(8, dim=-1)
    assert torch.equal(got.ids[scored], top_ids[scored])
    assert torch.allclose(got.logp[scored], top_logp[scored], atol=tol, rtol=tol)
    tail = torch.log1p(-top_logp.exp().sum(-1))
    assert torch.allclose(got.tail_logp[scored], tail[scored], atol=1e-4)
    entropy = -(logp.exp() * logp).sum(-1)
    assert torch.allclose(got.entropy[scored], entropy[scored], atol=1e-5)
    assert int(scored.sum()) == totals["positions"]
    # Positions that are not scored stay finite: id 0, slot 0 at log 1, the rest empty.
    assert (got.ids[~scored] == 0).all() and (got.logp[~scored][:, 0] == 0).all()
    assert torch.isneginf(got.logp[~scored][:, 1:]).all()
    assert torch.isneginf(got.tail_logp[~scored]).all()


def test_sampled_counts_average_to_the_teacher_probabilities():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 16, generator=gen) * 2
    p = F.softmax(logits / TEMPERATURE, dim=-1)[0]
    rows, draws = 4000, 16
    s = CaptureSettings(kind="sampled", draws=draws, temperature=TEMPERATURE)
    out = sparsify(logits.expand(rows, -1), s, gen)
    assert out["width"].sum() == len(out["ids"]) and (out["val"].sum() == rows * draws)
    estimate = torch.zeros(16).index_add_(0, out["ids"], out["val"].float()) / (rows * draws)
    sigma = (p * (1 - p) / (rows * draws)).sqrt()
    assert ((estimate - p).abs() <= 5 * sigma + 1e-6).all()
    # The unique ids of each position are sorted and their counts sum to the draws.
    starts = torch.cat([torch.zeros(1, dtype=torch.long), out["width"].cumsum(0)])
    for r in range(5):
        ids = out["ids"][starts[r] : starts[r + 1]]
        assert (ids[1:] > ids[:-1]).all() and out["val"][starts[r] : starts[r + 1]].sum() == draws


def test_only_the_shared_logit_columns_are_kept():
    """A teacher with extra vocabulary rows (CodeLlama: 32016 vs 32000) is cut to the shared ids."""
    logits = torch.randn(5, 12)
    s = CaptureSettings(kind="topk", k=10, temperature=1.0, vocab=10)
    out = sparsify(logits, s)
    assert out["ids"].max() < 10
    expected = F.log_softmax(logits[:, :10], -1).sort(-1, descending=True).values
    assert torch.allclose(out["val"].view(5, 10), expected)
    assert torch.isneginf(out["tail"]).all()  # k covers every kept id: no mass left outside
    sampled = sparsify(logits, CaptureSettings(kind="sampled", draws=64, vocab=3))
    assert sampled["ids"].max() < 3 and int(sampled["val"].sum()) == 5 * 64


def test_sampled_cache_is_an_unbiased_sparse_distribution(tmp_path, examples, tokenizer):
    totals = build(tmp_path / "a", examples, tokenizer, kind="sampled", draws=24)
    batch, logp, scored = dense(examples, tokenizer)
    got = LogitCache.open(tmp_path / "a").batch([e["id"] for e in examples], batch["labels"])
    assert got.kind == "sampled" and torch.isneginf(got.tail_logp).all()
    assert got.ids.shape[-1] <= 24
    weights = got.logp[scored].exp()
    assert torch.allclose(weights.sum(-1), torch.ones(int(scored.sum())), atol=1e-5)
    counts = weights * 24  # log(count / draws) exactly: whole counts
    assert torch.allclose(counts, counts.round(), atol=1e-3)
    assert (logp.gather(-1, got.ids)[scored][weights > 0] > -30).all()  # drawn ids are likely
    entropy = -(logp.exp() * logp).sum(-1)
    assert torch.allclose(got.entropy[scored], entropy[scored], atol=1e-5)
    # The cross-entropy of the draws estimates the dense one (KL = CE - H); 1 row's noise averages.
    ce_dense = -(logp.exp() * logp).sum(-1)[scored].mean()
    ce_sparse = -(weights * logp.gather(-1, got.ids)[scored]).sum(-1).mean()
    assert abs(float(ce_sparse - ce_dense)) < 0.05 * float(ce_dense)
    # Seeded per shard: a second build draws the same tokens.
    build(tmp_path / "b", examples, tokenizer, kind="sampled", draws=24)
    again = LogitCache.open(tmp_path / "b").batch([e["id"] for e in examples], batch["labels"])
    assert torch.equal(again.ids, got.ids) and totals["positions"] == int(scored.sum())


def test_manifest_mismatch_names_each_field_and_the_fix(tmp_path, examples, tokenizer):
    build(tmp_path, examples, tokenizer, kind="topk", k=8)
    expect = {"kind": "topk", "k": 16, "draws": 64, "temperature": 1.0}
    with pytest.raises(CacheError) as info:
        LogitCache.open(tmp_path, expect)
    text = str(info.value)
    assert "k: cache 8, run 16" in text and "temperature: cache 2.0, run 1.0" in text
    assert "kind: cache" not in text and "draws: cache" not in text  # only what differs
    assert "distill teacher-cache" in text and "teacher_cache.k=16" in text
    # Building into a folder started with other settings is refused too (nothing is mixed).
    with pytest.raises(CacheError, match="k: cache 8, run 16"):
        build(tmp_path, examples, tokenizer, kind="topk", k=16)


def test_missing_record_and_other_tokenisation_are_named(tmp_path, examples, tokenizer):
    build(tmp_path, examples[:3], tokenizer, kind="topk", k=4)
    cache = LogitCache.open(tmp_path)
    labels = padded(examples[:3], tokenizer.pad_token_id, torch.device("cpu"))["labels"]
    with pytest.raises(CacheError, match="record r005 is not in the teacher cache"):
        cache.batch(["r000", "r001", "r005"], labels)
    shorter = labels.clone()
    shorter[2, -3:] = IGNORE_INDEX  # row 2 is the longest: its last labels are answer tokens
    with pytest.raises(CacheError, match="record r002: .* holds \\d+ scored positions"):
        cache.batch(["r000", "r001", "r002"], shorter)
    with pytest.raises(CacheError, match="does not exist"):
        LogitCache.open(tmp_path / "nowhere")


def test_cache_pickles_for_dataloader_workers(tmp_path, examples, tokenizer):
    build(tmp_path, examples, tokenizer, kind="sampled", draws=8)
    cache = LogitCache.open(tmp_path)
    ids = [e["id"] for e in examples]
    labels = padded(examples, tokenizer.pad_token_id, torch.device("cpu"))["labels"]
    first = cache.batch(ids, labels)  # shards now memory-mapped
    copy = pickle.loads(pickle.dumps(cache))
    assert not copy._shards
    second = copy.batch(ids, labels)
    assert torch.equal(first.ids, second.ids) and torch.equal(first.logp, second.logp)


class Killed(Exception):
    pass


def test_killed_build_resumes_at_the_next_shard(tmp_path, examples, tokenizer):
    build(tmp_path / "clean", examples, tokenizer, kind="topk", k=8, shard_records=2)

    def dies_in_the_third_shard():
        model, calls = load(), []

        def hook(*_):  # the head check (2 calls), then one forward per shard of 2 records
            calls.append(1)
            if len(calls) > 4:
                raise Killed

        model.get_decoder().register_forward_hook(hook)
        return model

    target = tmp_path / "killed"
    with pytest.raises(Killed):
        build(target, examples, tokenizer, teacher=dies_in_the_third_shard, k=8, shard_records=2)
    assert sorted(p.name for p in target.iterdir() if p.name.startswith("shard-")) == [
        "shard-00000",
        "shard-00001",
    ]
    with pytest.raises(CacheError, match="unfinished"):
        LogitCache.open(target)
    totals = build(target, examples, tokenizer, kind="topk", k=8, shard_records=2)
    assert totals["computed"] == 3  # shards 2 and 3 (2 + 1 records), not the first two
    ids = [e["id"] for e in examples]
    labels = padded(examples, tokenizer.pad_token_id, torch.device("cpu"))["labels"]
    a, b = (LogitCache.open(tmp_path / n).batch(ids, labels) for n in ("clean", "killed"))
    assert torch.equal(a.ids, b.ids) and torch.equal(a.logp, b.logp)
    assert not list(target.glob(".*.tmp"))


def test_a_grown_dataset_computes_only_the_new_shards(tmp_path, examples, tokenizer):
    build(tmp_path, examples[:4], tokenizer, kind="topk", k=4)
    totals = build(tmp_path, examples, tokenizer, kind="topk", k=4)
    assert totals["computed"] == 4  # shard 1 changed (1 -> 3 records), shard 2 is new
    assert len(LogitCache.open(tmp_path)) == 7
    assert build(tmp_path, examples, tokenizer, kind="topk", k=4)["computed"] == 0


def compose_config(stage: str, overrides: list[str]):
    register_hydra()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=stage, overrides=overrides)


def write_dataset(path, n: int = 6) -> None:
    path.write_text("".join(json.dumps(record(i)) + "\n" for i in range(n)))


def test_teacher_cache_command_end_to_end(tmp_path):
    data, run_dir = tmp_path / "data.jsonl", tmp_path / "run"
    write_dataset(data)
    overrides = ["experiment=tiny_smoke", f"data.dataset={data}", "teacher_cache.k=16"]
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-test"}
    command = [sys.executable, "-m", "distill", "teacher-cache"]
    out = subprocess.run(
        [*command, *overrides, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "bytes/token" in out.stdout + out.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["teacher_cache/examples"] == metrics["teacher_cache/computed"] == 6
    # The run that trains on it composes the same settings, so the manifest matches.
    cfg = compose_config("train", overrides)
    tokenizer = load_tokenizer(cfg.student.path)
    cache = LogitCache.open(run_dir / "teacher_cache", expected_manifest(cfg, tokenizer))
    assert len(cache) == 6 and cache.manifest["teacher"] == "tiny:teacher"
    # A rerun through the stage function finds every shard done and loads no teacher.
    again = run_teacher_cache(compose_config("teacher_cache", overrides), run_dir)
    assert again["teacher_cache/computed"] == 0
    wrong = compose_config("train", [*overrides[:2], "data.max_length=64"])
    with pytest.raises(CacheError, match="max_length: cache 512, run 64"):
        LogitCache.open(run_dir / "teacher_cache", expected_manifest(wrong, tokenizer))
    claude = subprocess.run(
        [*command, "teacher=claude_haiku", f"data.dataset={data}", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert claude.returncode == 2
    assert "needs a white-box teacher" in claude.stderr + claude.stdout


def test_bytes_per_token_is_what_the_format_says(tmp_path, examples, tokenizer):
    totals = build(tmp_path, examples, tokenizer, kind="topk", k=32, shard_records=100)
    # uint16 ids + float16 log-probs per slot, float32 tail and entropy per position, and the
    # 128-byte header of each of the 4 .npy files.
    assert totals["bytes"] == totals["positions"] * (32 * (2 + 2) + 4 + 4) + 4 * 128
    assert math.isclose(totals["bytes_per_token"], totals["bytes"] / totals["positions"])
    shard = np.load(tmp_path / "shard-00000" / "ids.npy")
    assert shard.dtype == np.uint16
