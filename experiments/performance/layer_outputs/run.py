"""Memory of the layer-wise losses' inputs: every layer's outputs against the mapped layers only.

Attention transfer and feature matching read the attention maps / hidden states of their mapped
layer pairs. Hugging Face's `output_attentions=True` / `output_hidden_states=True` return every
layer's; `distill.training.capture` records only the mapped ones. Two parts:

1. Arithmetic at the real shapes (CodeLlama-7B student; CodeLlama-7B and -34B teachers),
   sequence 2048, batch 1, bf16: the bytes of the tensors the step hands to the losses.
2. A measurement that checks the arithmetic: `step_outputs` (the trainer's forward) on Llamas of
   the same depths and head counts but small width and sequence, both ways, summing the bytes of
   the tensors it returns, beside the formula's bytes at that shape.

    .venv/bin/python experiments/performance/layer_outputs/run.py   # writes results.csv here
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from distill.losses import build_loss  # noqa: E402
from distill.losses.layer_map import layer_outputs  # noqa: E402
from distill.testing import fake_batch, tiny_llama, tiny_tokenizer  # noqa: E402
from distill.training.module import step_outputs  # noqa: E402

sys.path.insert(0, str(HERE.parents[1]))  # experiments/
from provenance import provenance, write_csv  # noqa: E402

# (layers, attention heads, hidden size) from the models' config.json
SHAPES = {"codellama-7b": (32, 32, 4096), "codellama-34b": (48, 64, 8192)}
MAPPINGS = {  # loss.components.<name>.layers (and last_k)
    "uniform": {"layers": "uniform"},
    "last_k=4": {"layers": "last_k", "last_k": 4},
    "one pair": {"layers": [[15, 23]]},
}
BYTES = 2  # bf16


def mapped(mapping: dict, student: int, teacher: int, component: str) -> tuple[set, set]:
    loss = build_loss({component: {"weight": 1.0, **mapping}})
    layers = loss.layers_read(student, teacher)
    kind = "attentions" if component == "attn_transfer" else "hidden_states"
    return layers[kind], layers[f"teacher_{kind}"]


def formula(shape: tuple[int, int, int], layers: int, kind: str, seq: int, batch: int = 1) -> int:
    """Bytes of `layers` layers' attention maps (B, heads, T, T) or hidden states (B, T, H)."""
    _, heads, hidden = shape
    per_layer = batch * heads * seq * seq if kind == "attn" else batch * seq * hidden
    return layers * per_layer * BYTES


def arithmetic(seq: int = 2048) -> list[dict]:
    rows = []
    student = SHAPES["codellama-7b"]
    for teacher_name, teacher in SHAPES.items():
        for name, mapping in MAPPINGS.items():
            for component, kind in (("attn_transfer", "attn"), ("feature_match", "hidden")):
                s_layers, t_layers = mapped(mapping, student[0], teacher[0], component)
                # every layer: attentions L tensors; hidden states L + 1 (with the embeddings)
                extra = 1 if kind == "hidden" else 0
                every = formula(student, student[0] + extra, kind, seq) + formula(
                    teacher, teacher[0] + extra, kind, seq
                )
                ours = formula(student, len(s_layers), kind, seq) + formula(
                    teacher, len(t_layers), kind, seq
                )
                rows.append(
                    {
                        "part": "arithmetic",
                        "teacher": teacher_name,
                        "component": component,
                        "mapping": name,
                        "seq": seq,
                        "layers_student": len(s_layers),
                        "layers_teacher": len(t_layers),
                        "every_layer_bytes": every,
                        "mapped_only_bytes": ours,
                    }
                )
    return rows


def returned_bytes(out, kind: str) -> int:
    names = ("student_attentions", "teacher_attentions") if kind == "attn" else (
        "student_hidden_states", "teacher_hidden_states"
    )  # fmt: skip
    return sum(t.nbytes for n in names for t in (getattr(out, n) or ()) if t is not None)


def measured(seq: int = 128) -> list[dict]:
    """The same depths and head counts at width 4 x heads, in bf16, on the CPU."""
    rows = []
    s_shape, t_shape = SHAPES["codellama-7b"], SHAPES["codellama-34b"]
    models = []
    for layers, heads, _ in (s_shape, t_shape):
        model = tiny_llama(
            num_layers=layers, hidden_size=4 * heads, num_attention_heads=heads,
            num_key_value_heads=heads, intermediate_size=8,
        ).to(torch.bfloat16)  # fmt: skip
        model.set_attn_implementation("eager")
        models.append(model)
    student, teacher = models
    batch = fake_batch(tiny_tokenizer(), batch_size=1, length=seq)
    small = {k: (v[0], v[1], 4 * v[1]) for k, v in SHAPES.items()}
    for name, mapping in MAPPINGS.items():
        for component, kind in (("attn_transfer", "attn"), ("feature_match", "hidden")):
            loss = build_loss({component: {"weight": 1.0, **mapping}})
            loss.prepare(student.config, teacher.config)  # the width projection
            layers = loss.layers_read(s_shape[0], t_shape[0])
            with torch.no_grad():
                every = step_outputs(student, teacher, batch, loss.requires, False, None)
                ours = step_outputs(student, teacher, batch, loss.requires, False, layers)
                value_every = float(loss(every, batch).total)
                value_ours = float(loss(ours, batch).total)
            s_layers, t_layers = mapped(mapping, s_shape[0], t_shape[0], component)
            if kind == "hidden":  # what the losses read: the layers' outputs
                assert len(layer_outputs(ours.student_hidden_states)) == s_shape[0]
            rows.append(
                {
                    "part": "measured",
                    "teacher": "codellama-34b depth and heads",
                    "component": component,
                    "mapping": name,
                    "seq": seq,
                    "layers_student": len(s_layers),
                    "layers_teacher": len(t_layers),
                    "every_layer_bytes": returned_bytes(every, kind),
                    "mapped_only_bytes": returned_bytes(ours, kind),
                    "formula_mapped_bytes": formula(small["codellama-7b"], len(s_layers), kind, seq)
                    + formula(small["codellama-34b"], len(t_layers), kind, seq),
                    "loss_every": value_every,
                    "loss_mapped": value_ours,
                }
            )
    return rows


def gib(n: int) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def main() -> None:
    rows = arithmetic() + measured()
    write_csv(HERE / "results.csv", rows, provenance(sys.argv))
    head = ["part", "teacher", "component", "mapping", "layers (s, t)", "every layer"]
    print("| " + " | ".join([*head, "mapped only", "ratio"]) + " |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        every, ours = r["every_layer_bytes"], r["mapped_only_bytes"]
        print(
            f"| {r['part']} | {r['teacher']} | {r['component']} | {r['mapping']} | "
            f"{r['layers_student']}, {r['layers_teacher']} | {gib(every)} | {gib(ours)} | "
            f"{ours / every:.2f} |"
        )


if __name__ == "__main__":
    main()
