"""`gpu_7b.py --mode trainer`: training steps through `distill train`'s own machinery at 7B shape.

Where the other modes call the trainer's `step_outputs` and loss directly, this one goes the way
`distill train` does: records in the student's prompt format (`conf/student/codellama_7b.yaml`:
alpaca) tokenized by the CodeLlama-shaped tokenizer (Llama 2's SentencePiece file plus the 16
infilling pieces, `distill.testing.codellama_model_dir`) through `DistillDataModule`, then
`DistillationModule.training_step` under a Lightning `Trainer` built from the hardware preset
(`h100_80g` on a GPU, `cpu` for the dry run), with an online bf16 teacher and `conf/loss/ce_kl`.
The student and teacher are the random 7B-shaped models of `gpu_7b.py` (no download).
"""

from __future__ import annotations

import functools
import json
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from omegaconf import OmegaConf

from distill.data.batching.datamodule import DistillDataModule
from distill.hardware import trainer_kwargs
from distill.losses import build_loss
from distill.models.loading import load_student_tokenizer
from distill.testing import CODELLAMA_VOCAB, codellama_model_dir
from distill.training.module import DistillationModule

ROOT = Path(__file__).resolve().parents[2]
LLAMA2 = ROOT.parent / "shared" / "data" / "llama2_tokenizer" / "tokenizer.model"


def write_records(path: Path, count: int, tokens: int) -> Path:
    """`count` records whose prompt and answer (a Python function, about 14 tokens a line) come
    to at most about `tokens` tokens, so the answer's EOS is trained too."""
    lines = [f"    total += {i} * x  # step {i}" for i in range(max(1, (tokens - 80) // 14))]
    records = [
        {
            "id": f"r{n}",
            "messages": [{"role": "user", "content": f"Write accumulate_{n}(x)."}],
            "response": f"```python\ndef accumulate_{n}(x):\n    total = 0\n"
            + "\n".join(lines)
            + "\n    return total\n```",
        }
        for n in range(count)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


class StepClock(L.Callback):
    """Wall time, tokens and the first batch of each training step."""

    def __init__(self, meter) -> None:
        self.meter, self.times, self.tokens, self.first = meter, [], [], None
        self.peaks: list[int] = []
        self.losses: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.first = self.first or {k: v.detach().cpu() for k, v in batch.items() if k != "id"}
        self.meter.reset_peak()
        self.tick = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.times.append(time.perf_counter() - self.tick)
        self.losses.append(float(outputs["loss"]))
        self.tokens.append(int(batch["attention_mask"].sum()))
        self.peaks.append(self.meter.peak())


def run_trainer(args, device: torch.device, meter, builders) -> dict:
    """Warm-up and timed steps of `distill train`'s path; `builders` are gpu_7b's model makers."""
    llama_config, student_settings, build_student, build_teacher = builders
    tokenizer_model = Path(args.tokenizer or LLAMA2)
    if not tokenizer_model.exists():
        raise SystemExit(
            f"gpu_7b --mode trainer: {tokenizer_model} is missing: pass --tokenizer <Llama 2 "
            "tokenizer.model> (shared/data/llama2_tokenizer/ in the project's shared data)"
        )
    torch.manual_seed(0)
    config = llama_config(args.shape)
    config.vocab_size = CODELLAMA_VOCAB  # the tokenizer's ids
    cfg = student_settings(args.dtype)
    cfg.path = str(codellama_model_dir(tokenizer_model))  # its tokenizer; the weights are built
    tokenizer = load_student_tokenizer(cfg)
    student = build_student(config, cfg, device)
    teacher = build_teacher(config, getattr(torch, args.dtype), device, "sdpa")
    components = OmegaConf.load(ROOT / "conf" / "loss" / "ce_kl.yaml").components
    loss = build_loss(OmegaConf.to_container(components))
    loss.vocab = CODELLAMA_VOCAB
    optimizer = functools.partial(torch.optim.AdamW, lr=3e-4, weight_decay=0.0)
    module = DistillationModule(student, teacher, loss, optimizer)
    steps = args.warmup + args.steps
    with tempfile.TemporaryDirectory() as tmp:
        data = write_records(Path(tmp) / "data.jsonl", 4 * steps * args.batch, args.seq)
        datamodule = DistillDataModule(
            data, tokenizer, max_length=args.seq, batch_size=args.batch, val_fraction=0.2
        )
        preset = "h100_80g" if device.type == "cuda" else "cpu"
        hardware = OmegaConf.load(ROOT / "conf" / "hardware" / f"{preset}.yaml")
        hardware.micro_batch_size = None
        clock = StepClock(meter)
        trainer = L.Trainer(
            **trainer_kwargs(hardware, args.batch),
            max_steps=steps,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            callbacks=[clock],
            default_root_dir=tmp,
        )
        trainer.fit(module, datamodule=datamodule)
    timed = slice(args.warmup, None)
    first = clock.first
    return {
        "mode": "trainer",
        "tokens_per_s": sum(clock.tokens[timed]) / sum(clock.times[timed]),
        "step_s": sum(clock.times[timed]) / len(clock.times[timed]),
        "loss": clock.losses,
        "batch": {
            "tokens": first["input_ids"].shape[1],
            "first_ids": first["input_ids"][0, :4].tolist(),
            "eos_labels_per_row": (first["labels"] == tokenizer.eos_token_id).sum(1).tolist(),
            "scored": int((first["labels"] != -100).sum()),
        },
        "memory_bytes": {"source": meter.source, "peak": max(clock.peaks)},
    }
