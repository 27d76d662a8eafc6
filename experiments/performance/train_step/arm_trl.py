"""TRL's arms, in the peer venv: `GKDTrainer` (TRL 1.16, PyPI) forward KL, and for the on-policy
arms also TRL's stable `DistillationTrainer`.

Configured to our objective: `lmbda=0` (never on-policy; the on-policy arms set `lmbda` and
`max_new_tokens`), `beta=0` (KL(teacher || student)), `seq_kd=False`, temperature 1. The student is
the same 4-bit NF4 base with the same LoRA settings (given as `peft_config`, so TRL wraps it
itself; it then casts the adapters of a quantised model to bf16). GKD's batches are the same
pre-tokenised examples, right-padded by a small collator: TRL's ChatML collator would re-tokenise
text and keep the last `max_length` tokens. `DistillationTrainer` takes the examples' prompts
(their chat messages) and templates them itself.

`options` (each a knob a TRL user can set, so every one ours turns is offered to TRL too): `bf16`
and `gradient_checkpointing` (TRL's defaults are both True), `group_by_length`, `micro_batch`
(the per-device batch; the rest of the global batch by gradient accumulation), `teacher_dtype`,
`compute_dtype` (the 4-bit weights' dequantisation dtype), `disable_dropout` (TRL's default True:
the LoRA dropout too), `lmbda`, `max_new_tokens`, `temperature`, `trainer` ("distillation").

    experiments/performance/.venv-peers/bin/python arm_trl.py SPEC.json
"""

from __future__ import annotations

import sys
import tempfile

# The peer venv holds torchao 0.14.1 for torchtune (kd_loss); PEFT 0.21 refuses any torchao older
# than 0.16 once it can import one. This arm uses no torchao: hide it (find_spec then says None).
sys.modules["torchao"] = None

from common import (  # noqa: E402
    IGNORE_INDEX,
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
    """Pads pre-tokenised examples; records each batch's non-padding tokens in order. With
    `prompts`, also the left-padded prompts GKD's on-policy step generates from (`prompts`,
    `prompt_attention_mask`, as TRL's own ChatML collator gives them)."""

    def __init__(self, pad_id: int, prompts: bool = False) -> None:
        self.pad_id, self.tokens, self.prompts = pad_id, [], prompts

    def __call__(self, examples: list[dict]) -> dict:
        batch = pad_batch(examples, self.pad_id)
        self.tokens.append(int(batch["attention_mask"].sum()))
        if self.prompts:
            batch.update(left_padded_prompts(examples, self.pad_id))
        return batch


def left_padded_prompts(examples: list[dict], pad_id: int) -> dict:
    """Each example's prompt (the tokens before its first scored label), left-padded."""
    import torch

    prompts = []
    for e in examples:
        scored = [i for i, label in enumerate(e["labels"]) if label != IGNORE_INDEX]
        prompts.append(e["input_ids"][: scored[0] if scored else len(e["input_ids"])])
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, p in enumerate(prompts):
        ids[row, width - len(p) :] = torch.tensor(p)
        mask[row, width - len(p) :] = 1
    return {"prompts": ids, "prompt_attention_mask": mask}


class StepTimes(TrainerCallback):
    """Times each optimizer step (on_step_begin .. on_step_end) and its optimizer phase."""

    def __init__(self, clock: StepClock, timer: PhaseTimer, collator: Collator | None) -> None:
        self.clock, self.timer, self.collator, self.step = clock, timer, collator, 0

    def on_step_begin(self, args, state, control, **kwargs):
        self.timer.active = self.step >= self.clock.warmup
        # The trainer fetches a step's micro-batches before it begins: step i is the i-th group
        # of `accumulation` collated batches.
        acc = args.gradient_accumulation_steps
        seen = self.collator.tokens if self.collator is not None else []  # prompts only: none
        self.clock.begin(self.step, sum(seen[self.step * acc : (self.step + 1) * acc]))

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.timer.start("optimizer")

    def on_step_end(self, args, state, control, **kwargs):
        self.timer.stop("optimizer")
        self.clock.end(self.step)
        self.step += 1


def trainer_args(spec: Spec, out_dir: str) -> dict:
    """The Trainer arguments both TRL trainers take, from the spec's options (bf16 and gradient
    checkpointing default to TRL's own defaults, both on)."""
    micro = spec.options.get("micro_batch", spec.batch_size)
    return {
        "output_dir": out_dir,
        "temperature": spec.options.get("temperature", 1.0),
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": spec.batch_size // micro,
        "disable_dropout": spec.options.get("disable_dropout", True),
        "max_steps": spec.warmup + spec.steps,
        "learning_rate": spec.lr,
        "weight_decay": 0.0,
        "optim": "adamw_torch",
        "bf16": spec.options.get("bf16", True),
        "gradient_checkpointing": spec.options.get("gradient_checkpointing", True),
        "use_cpu": True,
        "save_strategy": "no",
        "logging_steps": 5,
        "report_to": [],
        "dataloader_num_workers": 0,
        "seed": spec.seed,
        "disable_tqdm": True,
    }


def gkd_config(spec: Spec, out_dir: str):
    from trl.experimental.gkd import GKDConfig

    grouped = spec.options.get("group_by_length", False)
    return GKDConfig(
        **trainer_args(spec, out_dir),
        lmbda=spec.options.get("lmbda", 0.0),
        beta=0.0,
        seq_kd=False,
        max_new_tokens=spec.options.get("max_new_tokens", 128),
        max_length=spec.max_length,
        train_sampling_strategy="group_by_length" if grouped else "random",
    )


def distillation_config(spec: Spec, out_dir: str):
    """TRL's stable on-policy trainer at the GKD arms' settings: forward KL (`beta=0`), the
    student sampling at most `max_new_tokens` at `temperature` from its full distribution."""
    from trl import DistillationConfig

    return DistillationConfig(
        **trainer_args(spec, out_dir),
        beta=0.0,
        top_p=1.0,
        top_k=0,
        max_completion_length=spec.options["max_new_tokens"],
    )


def prompt_dataset(spec: Spec):
    """The training examples' prompts as TRL's prompt dataset (conversational: the trainer
    applies the chat template itself), in the order of examples.jsonl."""
    import json
    from pathlib import Path

    from datasets import Dataset

    n = len(read_examples(spec.work))
    records = Path(spec.work, "dataset.jsonl").read_text().splitlines()[:n]
    return Dataset.from_list([{"prompt": json.loads(r)["messages"]} for r in records])


def main(path: str) -> None:
    spec = Spec.load(path)
    setup_process(spec)
    from datasets import Dataset
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec.student_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    import torch

    if "compute_dtype" in spec.options:
        spec.compute_dtype = spec.options["compute_dtype"]
    teacher_dtype = getattr(torch, spec.options.get("teacher_dtype", "float32"))
    student, teacher = load_hf_pair(spec, teacher_dtype)
    clock, timer = StepClock(spec.warmup), PhaseTimer()
    with tempfile.TemporaryDirectory(prefix="trl-") as out_dir:
        if spec.options.get("trainer") == "distillation":
            from trl import DistillationTrainer

            collator = None
            trainer = DistillationTrainer(
                model=student,
                teacher_model=teacher,
                args=distillation_config(spec, out_dir),
                train_dataset=prompt_dataset(spec),
                processing_class=tokenizer,
                peft_config=lora_config(spec),
            )
        else:
            from trl.experimental.gkd import GKDTrainer

            examples = read_examples(spec.work)
            dataset = Dataset.from_list(examples)
            if spec.options.get("group_by_length"):
                lengths = [len(e["input_ids"]) for e in examples]
                dataset = dataset.add_column("length", lengths)
            collator = Collator(tokenizer.pad_token_id, prompts=spec.options.get("lmbda", 0.0) > 0)
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
