"""TRL's arms: `GKDTrainer` (TRL 1.16, PyPI) off-policy forward KL, in the peer venv.

Configured to our objective: `lmbda=0` (never on-policy), `beta=0` (KL(teacher || student)),
`seq_kd=False`, temperature 1. The student is the same 4-bit NF4 base with the same LoRA settings
(given as `peft_config`, so TRL wraps it itself; it then casts the adapters of a quantised model
to bf16). Batches are the same pre-tokenised examples, right-padded by a small collator: TRL's
ChatML collator would re-tokenise text and keep the last `max_length` tokens.

`options` (each a knob a TRL user can set, so every one ours turns is offered to TRL too): `bf16`
and `gradient_checkpointing` (TRL's defaults are both True), `group_by_length`, `micro_batch`
(the per-device batch; the rest of the global batch by gradient accumulation), `teacher_dtype`,
`compute_dtype` (the 4-bit weights' dequantisation dtype), `disable_dropout` (TRL's default True:
the LoRA dropout too).

    experiments/performance/.venv-peers/bin/python arm_trl.py SPEC.json
"""

from __future__ import annotations

import sys
import tempfile

# The peer venv holds torchao 0.14.1 for torchtune (kd_loss); PEFT 0.21 refuses any torchao older
# than 0.16 once it can import one. This arm uses no torchao: hide it (find_spec then says None).
sys.modules["torchao"] = None

from common import (  # noqa: E402
    PhaseTimer,
    Spec,
    StepClock,
    load_hf_pair,
    lora_config,
    pad_batch,
    peak_rss_mib,
    read_examples,
    report,
    setup_process,
    time_module,
)
from transformers import TrainerCallback  # noqa: E402


class Collator:
    """Pads pre-tokenised examples; records each batch's non-padding tokens in order."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id, self.tokens = pad_id, []

    def __call__(self, examples: list[dict]) -> dict:
        batch = pad_batch(examples, self.pad_id)
        self.tokens.append(int(batch["attention_mask"].sum()))
        return batch


class StepTimes(TrainerCallback):
    """Times each optimizer step (on_step_begin .. on_step_end) and its optimizer phase."""

    def __init__(self, clock: StepClock, timer: PhaseTimer, collator: Collator) -> None:
        self.clock, self.timer, self.collator, self.step = clock, timer, collator, 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.timer.active = self.step >= self.clock.warmup
        # The trainer fetches a step's micro-batches before it begins: step i is the i-th group
        # of `accumulation` collated batches.
        acc = args.gradient_accumulation_steps
        tokens = self.collator.tokens[self.step * acc : (self.step + 1) * acc]
        self.clock.begin(self.step, sum(tokens))

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.timer.start("optimizer")

    def on_step_end(self, args, state, control, **kwargs):
        self.timer.stop("optimizer")
        self.clock.end(self.step)
        self.step += 1


def gkd_config(spec: Spec, out_dir: str):
    from trl.experimental.gkd import GKDConfig

    bf16 = spec.options.get("bf16", True)
    grouped = spec.options.get("group_by_length", False)
    micro = spec.options.get("micro_batch", spec.batch_size)
    return GKDConfig(
        output_dir=out_dir,
        lmbda=0.0,
        beta=0.0,
        seq_kd=False,
        temperature=1.0,
        max_length=spec.max_length,
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=spec.batch_size // micro,
        disable_dropout=spec.options.get("disable_dropout", True),
        max_steps=spec.warmup + spec.steps,
        learning_rate=spec.lr,
        weight_decay=0.0,
        optim="adamw_torch",
        bf16=bf16,
        gradient_checkpointing=spec.options.get("gradient_checkpointing", True),
        train_sampling_strategy="group_by_length" if grouped else "random",
        use_cpu=True,
        save_strategy="no",
        logging_steps=5,
        report_to=[],
        dataloader_num_workers=0,
        seed=spec.seed,
        disable_tqdm=True,
    )


def main(path: str) -> None:
    spec = Spec.load(path)
    setup_process(spec)
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl.experimental.gkd import GKDTrainer

    tokenizer = AutoTokenizer.from_pretrained(spec.student_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    examples = read_examples(spec.work)
    dataset = Dataset.from_list(examples)
    if spec.options.get("group_by_length"):
        dataset = dataset.add_column("length", [len(e["input_ids"]) for e in examples])
    import torch

    if "compute_dtype" in spec.options:
        spec.compute_dtype = spec.options["compute_dtype"]
    teacher_dtype = getattr(torch, spec.options.get("teacher_dtype", "float32"))
    student, teacher = load_hf_pair(spec, teacher_dtype)
    collator = Collator(tokenizer.pad_token_id)
    clock, timer = StepClock(spec.warmup), PhaseTimer()
    with tempfile.TemporaryDirectory(prefix="trl-gkd-") as out_dir:
        trainer = GKDTrainer(
            model=student,
            teacher_model=teacher,
            args=gkd_config(spec, out_dir),
            data_collator=collator,
            train_dataset=dataset,
            processing_class=tokenizer,
            peft_config=lora_config(spec),
        )
        loaded_rss = peak_rss_mib()
        time_module(trainer.teacher_model, "teacher_fwd", timer)
        time_module(trainer.model, "student_fwd", timer)
        trainer.add_callback(StepTimes(clock, timer, collator))
        trainer.train()
    extra = {
        "precision": "bf16-autocast" if spec.options.get("bf16", True) else "fp32",
        "load_peak_rss_mib": loaded_rss,
    }
    report(spec, clock, timer, extra)


if __name__ == "__main__":
    main(sys.argv[1])
