"""Which decoder layers should the embedded default student keep?

Measured, not guessed: the cross-entropy (nats/token) of the pruned embedded teacher on the
teacher's own answers. Step 1 scores dropping each layer alone on a selection set (the dataset's
train split); step 2 drops layers in that order (least harmful first) and reports the held-out CE (the validation
split) at every size; step 3 re-scores chosen sizes with the student's 4-bit NF4 quantization.

    python experiments/student_layers/measure.py --dataset <run>/data/dataset.jsonl
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from distill.data.datamodule import DistillDataModule
from distill.models import load_teacher, load_tokenizer
from distill.models.loading import load_base_student
from distill.training.heldout import heldout_scores

log = logging.getLogger("student_layers")
SPEC = "embedded:smollm2-135m-instruct"


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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", type=Path, required=True)
    parser.add_argument("--min-layers", type=int, default=15)
    parser.add_argument(
        "--selection", type=int, default=16, help="train examples used to rank layers"
    )
    parser.add_argument("--nf4", type=int, nargs="*", default=[30, 28, 26, 24, 22, 20])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results.csv")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.manual_seed(0)

    teacher = load_teacher(OmegaConf.create({"path": SPEC, "dtype": "float32"}))
    dm = DistillDataModule(args.dataset, load_tokenizer(SPEC), max_length=384, batch_size=8)
    dm.setup()
    select = list(DataLoader(dm.train_set[: args.selection], batch_size=8, collate_fn=dm._collate))
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
        rows.append({"layers": size, "ce_fp32": ce_with(teacher, keep, held_out), "kept": keep})
        log.info("%d layers: held-out CE %.3f", size, rows[-1]["ce_fp32"])
    every_other = everything[::2]
    rows.append(
        {
            "layers": len(every_other),
            "ce_fp32": ce_with(teacher, every_other, held_out),
            "kept": every_other,
            "note": "every other layer",
        }
    )
    log.info("every other layer: held-out CE %.3f", rows[-1]["ce_fp32"])

    for row in rows:
        if row["layers"] in args.nf4 and "note" not in row:
            keep = None if row["layers"] == n else row["kept"]
            student = load_base_student(
                OmegaConf.create(
                    {
                        "path": SPEC,
                        "keep_layers": keep,
                        "quantization": "nf4",
                        "double_quant": True,
                        "compute_dtype": "float32",
                    }
                )
            )
            row["ce_nf4"] = heldout_scores(student, None, held_out)["ce"]
            log.info("%d layers in NF4: held-out CE %.3f", row["layers"], row["ce_nf4"])
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["layers", "ce_fp32", "ce_nf4", "note", "kept"])
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "kept": " ".join(map(str, r["kept"]))})
    log.info("wrote %s", args.out)


if __name__ == "__main__":
    main()
