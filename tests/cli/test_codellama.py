"""The CodeLlama-7B student path end to end, with the real Llama 2 tokenizer (CodeLlama-shaped)
and a tiny random Llama of vocabulary 32,016 standing in for the weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.models.prompt_formats import PROMPT_FORMATS
from distill.testing import codellama_model_dir
from tests.cli.test_cli import run

LLAMA2 = Path(__file__).resolve().parents[3] / "shared/data/llama2_tokenizer/tokenizer.model"
pytest.importorskip("sentencepiece", reason="building the tokenizer needs sentencepiece")
if not LLAMA2.exists():
    pytest.skip(f"{LLAMA2} is missing (shared data)", allow_module_level=True)


@pytest.mark.slow
def test_base_codellama_trains_in_its_format_and_evaluates_in_the_same(tmp_path, monkeypatch):
    """`student=codellama_7b` (NF4, LoRA, bf16 compute, no chat template): `distill train` with
    loss=ce, then `distill eval` of the adapters with chat prompts in the format they carry."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")  # a text-only teacher; never called
    model = codellama_model_dir(LLAMA2)
    data = tmp_path / "data.jsonl"
    records = [
        {
            "id": f"r{i}",
            "messages": [{"role": "user", "content": f"Write add{i}(a, b): a + b + {i}."}],
            "response": f"```python\ndef add{i}(a, b):\n    return a + b + {i}\n```",
        }
        for i in range(8)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    student = ["student=codellama_7b", f"student.path={model}", "teacher=claude_haiku"]
    train = tmp_path / "train"
    out = run(
        [
            "train",
            *student,
            "loss=ce",
            f"data.dataset={data}",
            "data.val_fraction=0.25",
            "data.batch_size=2",
            "train.max_steps=2",
            "train.val_every_n_steps=2",
            "logger=csv",
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
