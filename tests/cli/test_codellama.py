"""The CodeLlama-7B student path end to end, with the real Llama 2 tokenizer (CodeLlama-shaped)
and a tiny random Llama of vocabulary 32,016 standing in for the weights."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from distill.models.prompt_formats import PROMPT_FORMATS
from distill.testing import codellama_model_dir
from tests.cli.test_cli import run

LLAMA2 = Path(__file__).resolve().parents[3] / "shared/data/llama2_tokenizer/tokenizer.model"
pytest.importorskip("sentencepiece", reason="building the tokenizer needs sentencepiece")
if not LLAMA2.exists():
    pytest.skip(f"{LLAMA2} is missing (shared data)", allow_module_level=True)


def write_dataset(path: Path) -> Path:
    records = [
        {
            "id": f"r{i}",
            "messages": [{"role": "user", "content": f"Write add{i}(a, b): a + b + {i}."}],
            "response": f"```python\ndef add{i}(a, b):\n    return a + b + {i}\n```",
        }
        for i in range(8)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


TRAIN = [
    "data.val_fraction=0.25",
    "data.batch_size=2",
    "train.max_steps=2",
    "train.val_every_n_steps=2",
    "logger=csv",
]


@pytest.mark.slow
def test_base_codellama_trains_in_its_format_and_evaluates_in_the_same(tmp_path, monkeypatch):
    """`student=codellama_7b` (NF4, LoRA, bf16 compute, no chat template): `distill train` with
    loss=ce, then `distill eval` of the adapters with chat prompts in the format they carry."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")  # a text-only teacher; never called
    model = codellama_model_dir(LLAMA2)
    data = write_dataset(tmp_path / "data.jsonl")
    student = ["student=codellama_7b", f"student.path={model}", "teacher=claude_haiku"]
    train = tmp_path / "train"
    out = run(
        [
            "train",
            *student,
            "loss=ce",
            f"data.dataset={data}",
            *TRAIN,
            f"hydra.run.dir={train}",
        ],
        tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    adapters = train / "adapters"
    assert (adapters / "chat_template.jinja").read_text() == PROMPT_FORMATS["alpaca"]
    # the eval names no format (null): the adapters' own is used
    evaluation = tmp_path / "eval"
    out = run(
        [
            "eval",
            *student,
            "student.prompt_format=null",
            f"eval.adapters={adapters}",
            "eval.prompt_format=chat",
            "eval.limit=2",
            "eval.max_new_tokens=4",
            f"hydra.run.dir={evaluation}",
        ],
        tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["eval/humaneval/num_problems"] == 2
    # another format than the adapters' is refused before the model loads
    out = run(
        [
            "eval",
            *student,
            "student.prompt_format=codellama_instruct",
            f"eval.adapters={adapters}",
            "eval.prompt_format=chat",
            "eval.limit=2",
            f"hydra.run.dir={tmp_path / 'refused'}",
        ],
        tmp_path,
    )
    assert out.returncode == 2
    assert "not the format the adapters" in out.stderr + out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("teacher_vocab", [32016, 32000])
def test_codellama_learns_from_a_white_box_llama_teacher(teacher_vocab, tmp_path):
    """loss=kl with an online teacher of CodeLlama's vocabulary, or of Llama 2's 32,000 (the
    student's 16 infilling ids are left out of the comparison)."""
    student = codellama_model_dir(LLAMA2)
    teacher = codellama_model_dir(LLAMA2, infilling=teacher_vocab == 32016, seed=1)
    run_dir = tmp_path / "run"
    out = run(
        [
            "train",
            "student=codellama_7b",
            f"student.path={student}",
            "teacher=hf",
            f"teacher.path={teacher}",
            "loss=kl",
            f"data.dataset={write_dataset(tmp_path / 'data.jsonl')}",
            *TRAIN,
            f"hydra.run.dir={run_dir}",
        ],
        tmp_path,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/loss_first"] > 0 and math.isfinite(metrics["train/loss_last"])
    shared = "the logit losses use the first 32000 ids" in (out.stdout + out.stderr)
    assert shared == (teacher_vocab == 32000)
