"""Which decoder layers should an embedded student keep?

Measured, not guessed: the cross-entropy (nats/token) of the pruned teacher on the teacher's own
answers. Step 1 scores dropping each layer alone on a selection set (the dataset's train split);
step 2 drops layers in that order (least harmful first) and reports the held-out CE (the
validation split) at every size; step 3 re-scores chosen sizes as the student is really loaded
(pruned, 4-bit NF4) and, with `--problems N`, runs each of them on the first N HumanEval problems
through the evaluation harness (greedy, chat prompts, the sandbox), the teacher too.

    python experiments/student_layers/measure.py --dataset <run>/data/dataset.jsonl
    python experiments/student_layers/measure.py --model embedded:qwen2.5-coder-0.5b-instruct \
        --dtype bfloat16 --dataset <run>/data/dataset.jsonl --nf4 24 23 22 21 20 --problems 20 \
        --out experiments/student_layers/coder_results.csv
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
import tempfile
from functools import partial
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from distill.config import EvalConfig
from distill.data.batching.datamodule import DistillDataModule, collate
from distill.evaluation.harness import evaluate_model
from distill.evaluation.heldout import heldout_scores
from distill.models import load_teacher, load_tokenizer
from distill.models.loading import load_base_student

log = logging.getLogger("student_layers")


@contextlib.contextmanager
def only_layers(model, keep: list[int]):
    """Run `model` with only the decoder layers `keep`, restoring it afterwards."""
    layers = model.model.layers
    model.model.layers = torch.nn.ModuleList(layers[i] for i in keep)
    for new_idx, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = new_idx
    try:
        yield model
    finally:
        model.model.layers = layers
        for idx, layer in enumerate(layers):
            layer.self_attn.layer_idx = idx


def ce_with(model, keep: list[int], batches) -> float:
    with only_layers(model, keep):
        return heldout_scores(model, None, batches)["ce"]


def pass_at_1(model, tokenizer, problems: int, label: str) -> float:
    """Greedy pass@1 on the first `problems` HumanEval problems (chat prompts, the sandbox)."""
    cfg = EvalConfig(limit=problems, batch_size=8, max_new_tokens=384)
    with tempfile.TemporaryDirectory() as out:
        return evaluate_model(model, tokenizer, cfg, Path(out), label)["eval/humaneval/pass@1"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--dtype", default="float32", help="the teacher's and student's compute")
    parser.add_argument("--max-length", type=int, default=384)
    parser.add_argument("--min-layers", type=int, default=15)
    parser.add_argument(
        "--selection", type=int, default=16, help="train examples used to rank layers"
    )
    parser.add_argument("--nf4", type=int, nargs="*", default=[30, 28, 26, 24, 22, 20])
    parser.add_argument("--problems", type=int, default=0, help="HumanEval problems (0: none)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.csv")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)

    teacher = load_teacher(OmegaConf.create({"path": args.model, "dtype": args.dtype}))
    tokenizer = load_tokenizer(args.model)
    dm = DistillDataModule(args.dataset, tokenizer, max_length=args.max_length, batch_size=8)
    dm.setup()
    pad = partial(collate, pad_id=tokenizer.pad_token_id)
    select = list(DataLoader(dm.train_set[: args.selection], batch_size=8, collate_fn=pad))
    held_out = list(dm.val_dataloader())
    n = teacher.config.num_hidden_layers
    everything = list(range(n))

    harm = {
        layer: ce_with(teacher, [k for k in everything if k != layer], select)
        for layer in everything
    }
    order = sorted(harm, key=harm.get)
    log.info(
        "selection CE with each layer dropped alone: %s",
        {k: round(v, 2) for k, v in sorted(harm.items())},
    )
    rows = []
    for size in range(n, args.min_layers - 1, -1):
        keep = sorted(order[n - size :]) if size < n else everything
        rows.append({"layers": size, "ce_teacher_dtype": ce_with(teacher, keep, held_out)})
        rows[-1]["kept"] = keep
        log.info("%d layers: held-out CE %.3f", size, rows[-1]["ce_teacher_dtype"])
    every_other = everything[::2]
    rows.append(
        {
            "layers": len(every_other),
            "ce_teacher_dtype": ce_with(teacher, every_other, held_out),
            "kept": every_other,
            "note": "every other layer",
        }
    )
    log.info("every other layer: held-out CE %.3f", rows[-1]["ce_teacher_dtype"])
    if args.problems:
        rows[0]["pass@1_teacher_dtype"] = pass_at_1(teacher, tokenizer, args.problems, "teacher")
    del teacher

    for row in rows:
        if row["layers"] in args.nf4 and "note" not in row:
            keep = None if row["layers"] == n else row["kept"]
            student = load_base_student(
                OmegaConf.create(
                    {
                        "path": args.model,
                        "keep_layers": keep,
                        "quantization": "nf4",
                        "double_quant": True,
                        "compute_dtype": args.dtype,
                    }
                )
            )
            row["ce_nf4"] = heldout_scores(student, None, held_out)["ce"]
            if args.problems:
                row["pass@1_nf4"] = pass_at_1(student, tokenizer, args.problems, "student")
            log.info("%d layers in NF4: %s", row["layers"], row)
    fields = ["layers", "ce_teacher_dtype", "ce_nf4", "pass@1_teacher_dtype", "pass@1_nf4"]
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=[*fields, "note", "kept"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "kept": " ".join(map(str, r["kept"]))})
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
