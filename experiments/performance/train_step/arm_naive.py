"""The baseline arm: a plain hand-written QLoRA distillation loop, as a PyTorch user writes it.

HF student in 4-bit NF4 with PEFT LoRA, the teacher's forward under `no_grad`, full (B, T, V)
logits on both sides, `F.kl_div` (plus cross-entropy when `options.ce_weight` > 0), AdamW.
`options.bf16`: the forward passes and the loss under CPU bf16 autocast.

    python arm_naive.py SPEC.json
"""

from __future__ import annotations

import random
import sys
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from common import (
    PhaseTimer,
    Spec,
    StepClock,
    load_hf_pair,
    lora_config,
    pad_batch,
    read_examples,
    report,
    setup_process,
)


def build_student(spec: Spec, base: torch.nn.Module) -> torch.nn.Module:
    """The base with k-bit preparation (when quantised) and fresh LoRA adapters, in train mode."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if spec.quantization:
        base = prepare_model_for_kbit_training(base, use_gradient_checkpointing=False)
    return get_peft_model(base, lora_config(spec)).train()


def kd_loss(
    s_logits: torch.Tensor, t_logits: torch.Tensor, labels: torch.Tensor, ce_weight: float
) -> torch.Tensor:
    """Forward KL(teacher || student) per scored token, plus `ce_weight` x CE on the labels.

    Args:
        s_logits, t_logits: (B, T, V) logits; position t predicts token t + 1.
        labels: (B, T), -100 where not scored.
    """
    mask = labels[:, 1:] != -100
    s = s_logits[:, :-1][mask].float()  # (N, V)
    t = t_logits[:, :-1][mask].float()
    s_logp, t_logp = F.log_softmax(s, -1), F.log_softmax(t, -1)
    kl = F.kl_div(s_logp, t_logp, log_target=True, reduction="batchmean")
    if ce_weight == 0:
        return kl
    ce = F.nll_loss(s_logp, labels[:, 1:][mask])
    return (1 - ce_weight) * kl + ce_weight * ce


def train(spec: Spec, student, teacher, pad_id: int) -> tuple[StepClock, PhaseTimer]:
    """Warm-up then timed steps over shuffled batches; phases timed by hand."""
    examples = read_examples(spec.work)
    random.Random(spec.seed).shuffle(examples)
    bs = spec.batch_size
    batches = [examples[i : i + bs] for i in range(0, len(examples), bs)]
    trainable = [p for p in student.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=spec.lr, weight_decay=0.0)
    bf16 = spec.options.get("bf16", False)
    ce_weight = spec.options.get("ce_weight", 0.0)
    clock, timer = StepClock(spec.warmup), PhaseTimer()
    for step in range(spec.warmup + spec.steps):
        timer.active = step >= spec.warmup
        batch = pad_batch(batches[step % len(batches)], pad_id)
        clock.begin(step, int(batch["attention_mask"].sum()))
        inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with amp:
            timer.start("teacher_fwd")
            with torch.no_grad():
                t_logits = teacher(**inputs).logits
            timer.stop("teacher_fwd")
            timer.start("student_fwd")
            s_logits = student(**inputs).logits
            timer.stop("student_fwd")
            timer.start("loss")
            loss = kd_loss(s_logits, t_logits, batch["labels"], ce_weight)
            timer.stop("loss")
        timer.start("backward")
        loss.backward()
        timer.stop("backward")
        timer.start("optimizer")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        timer.stop("optimizer")
        del t_logits, s_logits, loss
        clock.end(step)
    return clock, timer


def main(path: str) -> None:
    spec = Spec.load(path)
    setup_process(spec)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.student_dir)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    base, teacher = load_hf_pair(spec)
    student = build_student(spec, base)
    clock, timer = train(spec, student, teacher, pad_id)
    precision = "bf16-autocast" if spec.options.get("bf16") else "fp32"
    report(spec, clock, timer, {"precision": precision})


if __name__ == "__main__":
    main(sys.argv[1])
