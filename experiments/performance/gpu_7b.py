"""A 7B QLoRA distillation step on one GPU, with no download: speed and memory.

Builds a randomly initialised Llama of CodeLlama-7B's shape, quantises it to 4-bit NF4 with double
quantisation layer by layer (peak stays near the 4-bit size), adds LoRA r=16 on every linear
projection through `distill.models.loading.add_lora` (the student loader's own k-bit preparation,
checkpointing and adapters), and runs distillation steps at T=2048 through the trainer's own
`step_outputs` and the chunked CE + KL loss:

  cache     the teacher's signal is a sparse top-k cache (`SparseTargets`, random values)
  online    an online bf16 teacher of the same shape under no_grad, dense logits
  attn      online, plus attention transfer (conf/loss/kl_attn.yaml, eager attention)
  feature   online, plus hidden-state matching (conf/loss/kl_feature.yaml)
  trainer   online CE + KL through `distill train`'s own machinery: the CodeLlama-shaped tokenizer,
            DistillDataModule, DistillationModule and a Lightning Trainer (gpu_7b_trainer.py)

The layer-wise modes record only the mapped layers (`--layers`: uniform, last_k=<k>), as the
trainer does; experiments/performance/layer_outputs/ has the arithmetic for every layer.

Run from the repository root (experiments/performance/README.md holds the results):

    .venv/bin/python experiments/performance/gpu_7b.py --out gpu_7b.json      # a CUDA torch
    .venv/bin/python experiments/performance/gpu_7b.py --dry-run             # tiny shape, CPU
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import threading
import time
from contextlib import nullcontext
from pathlib import Path

import psutil
import torch
from omegaconf import OmegaConf
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]  # distill; gpu_7b_trainer

from distill.config import StudentConfig  # noqa: E402
from distill.losses import build_loss  # noqa: E402
from distill.losses.base import SparseTargets  # noqa: E402
from distill.models.loading import add_lora, quantization_config  # noqa: E402
from distill.training.module import step_outputs  # noqa: E402

SHAPES = {  # CodeLlama-7B's config.json, and a tiny one for the CPU dry run
    "7b": {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
           "num_attention_heads": 32, "vocab_size": 32016},
    "tiny": {"hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
             "num_attention_heads": 4, "vocab_size": 512},
}  # fmt: skip
MODES = ("cache", "online", "attn", "feature", "trainer")
PRESETS = {"cache": "ce_kl", "online": "ce_kl", "attn": "kl_attn", "feature": "kl_feature"}
LAYERED = {"attn": "attn_transfer", "feature": "feature_match"}


def llama_config(shape: str):
    from transformers import LlamaConfig

    dims = SHAPES[shape]
    return LlamaConfig(
        **dims,
        num_key_value_heads=dims["num_attention_heads"],
        rope_theta=1e6,
        max_position_embeddings=16384,
        bos_token_id=1,
        eos_token_id=2,
    )


def student_settings(dtype: str):
    """conf/student/codellama_7b.yaml over the schema, with the compute dtype of this card."""
    yaml = OmegaConf.load(ROOT / "conf" / "student" / "codellama_7b.yaml")
    cfg = OmegaConf.merge(OmegaConf.structured(StudentConfig), yaml)
    cfg.compute_dtype = dtype
    OmegaConf.to_object(cfg)  # the schema's checks
    return cfg


def build_loss_for(mode: str, layers: str):
    """The conf/loss preset of `mode`, its layer-wise component mapped by `layers`."""
    components = OmegaConf.to_container(
        OmegaConf.load(ROOT / "conf" / "loss" / f"{PRESETS[mode]}.yaml").components
    )
    if mode in LAYERED:
        kind, _, k = layers.partition("=")
        components[LAYERED[mode]] |= {"layers": kind, "last_k": int(k or 1)}
    return build_loss(components)


def build_student(config, cfg, device: torch.device, attn: str = "sdpa") -> nn.Module:
    """The 4-bit LoRA student: built on the meta device, then each linear layer is given a random
    bf16 weight on `device` and quantised at once, as transformers' 4-bit loader does per tensor."""
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM
    from transformers.integrations.bitsandbytes import replace_with_bnb_linear

    dtype = getattr(torch, cfg.compute_dtype)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    replace_with_bnb_linear(model, ["lm_head"], quantization_config(cfg))
    std = config.initializer_range
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            weight = torch.empty(
                module.out_features, module.in_features, dtype=dtype, device=device
            )
            params = module.weight.__dict__  # quant type, double quant, storage, module
            module.weight = bnb.nn.Params4bit(weight.normal_(0, std), **params).to(device)
            continue
        for name, param in list(module.named_parameters(recurse=False)):
            value = torch.empty_like(param, device=device)
            norm = "norm" in type(module).__name__.lower()  # RMSNorm scales start at 1
            value = value.fill_(1.0) if norm else value.normal_(0, std)
            setattr(module, name, nn.Parameter(value, requires_grad=False))
    rotary = model.model.rotary_emb  # its buffers are computed in __init__: rebuild off meta
    model.model.rotary_emb = type(rotary)(config).to(device)
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:  # a transformers version with other lazily built tensors
        raise RuntimeError(f"gpu_7b: tensors left on the meta device: {left[:5]}; init them here")
    model.is_loaded_in_4bit = True  # what transformers' 4-bit loader marks; PEFT reads it
    return add_lora(model, cfg)


def build_teacher(config, dtype: torch.dtype, device: torch.device, attn: str) -> nn.Module:
    """A frozen random teacher of the same shape, created on `device` in `dtype`."""
    from transformers import AutoModelForCausalLM

    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    return model.to(device).eval().requires_grad_(False)  # to(): a no-op unless init ignored it


@torch.no_grad()
def sparse_targets(batch: int, seq: int, vocab: int, k: int, device) -> SparseTargets:
    """Random top-k targets in the cache reader's format: ids, logp (B, T, K); tail_logp (B, T)."""
    rows = batch * seq
    ids = torch.cat(
        [
            torch.rand(min(256, rows - i), vocab, device=device).topk(k).indices
            for i in range(0, rows, 256)
        ]
    )
    logp = torch.log_softmax(2 * torch.randn(rows, k + 1, device=device), -1)
    entropy = -(logp.exp() * logp).sum(-1)
    return SparseTargets(
        ids=ids.view(batch, seq, k),
        logp=logp[:, :k].reshape(batch, seq, k).contiguous(),
        tail_logp=logp[:, k].reshape(batch, seq).contiguous(),
        kind="topk",
        entropy=entropy.view(batch, seq),
    )


class Meter:
    """Memory in bytes: the CUDA allocator on a GPU; on a CPU, process RSS sampled every 2 ms."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.source = "cuda allocator" if self.cuda else "process RSS (sampled every 2 ms)"
        self._proc, self._peak, self._stop = psutil.Process(), 0, threading.Event()
        if not self.cuda:
            threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, self._proc.memory_info().rss)

    def now(self) -> int:
        if self.cuda:
            torch.cuda.synchronize()
            return torch.cuda.memory_allocated()
        return self._proc.memory_info().rss

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self._peak = self.now()

    def peak(self) -> int:
        if self.cuda:
            return torch.cuda.max_memory_allocated()
        return max(self._peak, self.now())

    def close(self) -> None:
        self._stop.set()


def tensor_bytes(model: nn.Module) -> dict[str, int]:
    """Exact bytes of the 4-bit weights (with their quantisation statistics), the other frozen
    weights (embeddings, head, norms: fp32 after the k-bit preparation) and the LoRA adapters."""
    out, seen = {"weights_4bit": 0, "weights_other": 0, "adapters": 0}, set()
    for param in model.parameters():
        state = getattr(param, "quant_state", None)
        if param.requires_grad:
            out["adapters"] += param.nbytes
        elif state is None:
            out["weights_other"] += param.nbytes
        else:
            stats = [state.absmax, state.code, state.offset]
            if state.nested:
                stats += [state.state2.absmax, state.state2.code]
            fresh = [t for t in stats if torch.is_tensor(t) and t.data_ptr() not in seen]
            seen.update(t.data_ptr() for t in fresh)
            out["weights_4bit"] += param.nbytes + sum(t.nbytes for t in fresh)
    return out


def optimizer_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(t.nbytes for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))


def train_step(student, teacher, loss, batch, optimizer, amp, layers) -> float:
    """One optimizer step as `DistillationModule.training_step` takes it (autocast forward)."""
    with amp:
        dense = loss.needs_dense_logits
        out = step_outputs(student, teacher, batch, loss.requires, dense, layers)
        result = loss(out, batch)
    result.total.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(result.total.detach())


def make_batch(mode: str, args, vocab: int, device: torch.device) -> dict:
    """Random token ids (B, T), every position scored: the most rows the loss can see."""
    ids = torch.randint(3, vocab, (args.batch, args.seq), device=device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    if mode == "cache":
        batch["teacher_sparse"] = sparse_targets(args.batch, args.seq, vocab, args.k, device)
    return batch


def run_mode(mode: str, args, device: torch.device, meter: Meter) -> dict:
    """Build the student (and the teacher for `online`), take warm-up and timed steps."""
    torch.manual_seed(0)
    config, cfg = llama_config(args.shape), student_settings(args.dtype)
    dtype = getattr(torch, args.dtype)
    meter.reset_peak()
    start = time.perf_counter()
    attn = "eager" if mode == "attn" else "sdpa"  # SDPA returns no attention maps
    student = build_student(config, cfg, device, attn).train()  # checkpointing, LoRA dropout
    sizes = tensor_bytes(student)
    teacher = build_teacher(config, dtype, device, attn) if mode != "cache" else None
    teacher_bytes = sum(p.nbytes for p in teacher.parameters()) if teacher is not None else 0
    build_s = time.perf_counter() - start
    loss = build_loss_for(mode, args.layers).to(device)
    loss.prepare(config, config if teacher is not None else None)
    loss.vocab = config.vocab_size
    layers = loss.layers_read(config.num_hidden_layers, config.num_hidden_layers)
    batch = make_batch(mode, args, config.vocab_size, device)
    trainable = [p for m in (student, loss) for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=3e-4, weight_decay=0.0)  # conf/config.yaml
    amp = torch.autocast(device.type, dtype=dtype) if args.autocast else nullcontext()
    peak, losses, times, activations = meter.peak(), [], [], 0
    for step in range(args.warmup + args.steps):
        resident = meter.now()
        peak = max(peak, meter.peak())
        meter.reset_peak()
        tick = time.perf_counter()
        losses.append(train_step(student, teacher, loss, batch, optimizer, amp, layers))
        step_peak = meter.peak()
        times.append(time.perf_counter() - tick)
        if step > 0:  # the first step also creates the optimizer state
            activations = max(activations, step_peak - resident)
    timed = times[args.warmup :]
    memory = {
        "source": meter.source,
        **sizes,
        "optimizer": optimizer_bytes(optimizer),
        "teacher": teacher_bytes,
        "resident": meter.now(),
        "activations": activations,
        "peak": max(peak, meter.peak()),
    }
    return {
        "mode": mode if mode not in LAYERED else f"{mode} ({args.layers})",
        "tokens_per_s": args.batch * args.seq * len(timed) / sum(timed),
        "step_s": sum(timed) / len(timed),
        "build_s": build_s,
        "loss": losses,
        "memory_bytes": memory,
    }


def size(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def print_table(results: list[dict], meter: Meter) -> None:
    keys = ["weights_4bit", "weights_other", "adapters", "optimizer", "teacher", "activations"]
    head = ["mode", "tokens/s", "step s", "loss", *keys, "peak"]
    rows = [
        [r["mode"], f"{r['tokens_per_s']:.1f}", f"{r['step_s']:.2f}", f"{r['loss'][-1]:.3f}"]
        + [size(r["memory_bytes"][k]) if k in r["memory_bytes"] else "-" for k in [*keys, "peak"]]
        for r in results
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    for row in [head, *rows]:
        print("  ".join(str(x).rjust(w) for x, w in zip(row, widths, strict=True)))
    print(f"memory: tensor bytes for weights/adapters/optimizer/teacher; {meter.source} for "
          "activations (step peak - resident before the step) and peak")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=[*MODES, "both", "all"], default="both",
                   help="both: cache and online; all: every mode")  # fmt: skip
    p.add_argument("--layers", default="uniform", help="attn/feature map: uniform or last_k=<k>")
    p.add_argument("--tokenizer", help="trainer: Llama 2's tokenizer.model (default: shared data)")
    p.add_argument("--dry-run", action="store_true", help="tiny shape on the CPU (no GPU needed)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seq", type=int, default=None, help="default 2048 (64 with --dry-run)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed steps after the warm-up")
    p.add_argument("--k", type=int, default=64, help="ids per position of the sparse cache")
    p.add_argument("--dtype", choices=["bfloat16", "float16"], default="bfloat16",
                   help="compute dtype and autocast; float16 on a T4 (no bf16)")  # fmt: skip
    p.add_argument("--no-autocast", dest="autocast", action="store_false")
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)
    args.shape = "tiny" if args.dry_run else "7b"
    args.seq = args.seq or (64 if args.dry_run else 2048)
    return args


def pick_device(dry_run: bool) -> torch.device:
    if dry_run:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        sys.exit(
            f"gpu_7b: no CUDA device (torch {torch.__version__}): run it on a GPU with a CUDA "
            "build of torch, or pass --dry-run for the tiny CPU check"
        )
    return torch.device("cuda")


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    device = pick_device(args.dry_run)
    meter, results = Meter(device), []
    modes = {"both": MODES[:2], "all": MODES}.get(args.mode, [args.mode])
    for mode in modes:
        if mode == "trainer":
            from gpu_7b_trainer import run_trainer

            builders = (llama_config, student_settings, build_student, build_teacher)
            results.append(run_trainer(args, device, meter, builders))
        else:
            results.append(run_mode(mode, args, device, meter))
        gc.collect()  # free this mode's models before the next one is built
        if device.type == "cuda":
            torch.cuda.empty_cache()
    meter.close()
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU x{os.cpu_count()}"
    print(f"{args.shape} shape, batch {args.batch} x {args.seq}, {args.dtype}, device: {name}")
    print_table(results, meter)
    if args.out:
        meta = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
        report = {"device": name, "torch": torch.__version__, "shape": SHAPES[args.shape]}
        report |= {"args": meta, "results": results}
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
