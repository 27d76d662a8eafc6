"""The CodeLlama-7B student path end to end, with the real Llama 2 tokenizer (CodeLlama-shaped)
and a tiny random Llama of vocabulary 32,016 standing in for the weights."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from distill.models.prompt_formats import PROMPT_FORMATS
from distill.testing import codellama_model_dir
from tests.cli.test_cli import run
from tests.teachers.fake_anthropic import FakeAnthropic

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


def train(
    tmp_path: Path, *overrides: str, student: str = "codellama_7b", dataset: Path | None = None
) -> tuple[subprocess.CompletedProcess, Path]:
    """`distill train student=<student>` on the tiny stand-in, 2 steps on 8 records."""
    run_dir = tmp_path / "train"
    args = [
        "train",
        f"student={student}",
        f"student.path={codellama_model_dir(LLAMA2)}",
        f"data.dataset={dataset or write_dataset(tmp_path / 'data.jsonl')}",
        "data.val_fraction=0.25",
        "data.batch_size=2",
        "train.max_steps=2",
        "train.val_every_n_steps=2",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    return run(args, tmp_path, timeout=600), run_dir


@pytest.mark.slow
def test_base_codellama_trains_in_its_format_and_evaluates_in_the_same(tmp_path, monkeypatch):
    """`student=codellama_7b` (NF4, LoRA, bf16 compute, no chat template): `distill generate`
    with Claude (the official SDK against the fake API on loopback), `distill train` on its
    answers with loss=ce, then `distill eval` of the adapters with chat prompts in their format."""
    with FakeAnthropic() as api:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-fake")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.base_url)
        args = [
            "generate",
            "teacher=claude_haiku",
            "student=codellama_7b",
            f"student.path={codellama_model_dir(LLAMA2)}",
            "data.num_examples=8",
            "teacher.retry.backoff_s=0.01",
            "teacher.cache.count_tokens=false",
            "data.export=false",
            f"hydra.run.dir={tmp_path / 'generate'}",
        ]
        out = run(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    dataset = tmp_path / "generate/data/dataset.jsonl"
    assert len(dataset.read_text().splitlines()) == 8
    out, run_dir = train(tmp_path, "teacher=claude_haiku", "loss=ce", dataset=dataset)
    assert out.returncode == 0, out.stderr[-3000:]
    adapters = run_dir / "adapters"
    assert (adapters / "chat_template.jinja").read_text() == PROMPT_FORMATS["alpaca"]

    def evaluate(folder: Path, prompt_format: str) -> subprocess.CompletedProcess:
        args = [
            "eval",
            "student=codellama_7b",
            f"student.path={codellama_model_dir(LLAMA2)}",
            f"student.prompt_format={prompt_format}",
            f"eval.adapters={adapters}",
            "eval.prompt_format=chat",
            "eval.limit=2",
            "eval.max_new_tokens=4",
            f"hydra.run.dir={folder}",
        ]
        return run(args, tmp_path, timeout=600)

    # the eval names no format (null): the adapters' own is used
    out = evaluate(tmp_path / "eval", "null")
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((tmp_path / "eval/metrics.json").read_text())
    assert metrics["eval/humaneval/num_problems"] == 2
    # another format than the adapters' is refused before the model loads
    out = evaluate(tmp_path / "refused", "codellama_instruct")
    assert out.returncode == 2
    assert "not the format the adapters" in out.stderr + out.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "teacher_vocab, teacher", [(32016, "hf"), (32000, "codellama_34b_instruct")]
)
def test_codellama_learns_from_a_white_box_llama_teacher(teacher_vocab, teacher, tmp_path):
    """loss=kl with an online teacher of CodeLlama's vocabulary, or of Llama 2's 32,000 (the
    student's 16 infilling ids are left out of the comparison) loaded as the 34B config says: in
    4-bit NF4, rendering [INST] turns as the Instruct student does."""
    folder = codellama_model_dir(LLAMA2, infilling=teacher_vocab == 32016, seed=1)
    student = "codellama_7b_instruct" if teacher != "hf" else "codellama_7b"
    out, run_dir = train(
        tmp_path, f"teacher={teacher}", f"teacher.path={folder}", "loss=kl", student=student
    )
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["train/loss_first"] > 0 and math.isfinite(metrics["train/loss_last"])
    logs = out.stdout + out.stderr
    assert ("the logit losses use the first 32000 ids" in logs) == (teacher_vocab == 32000)
    assert ("teacher: 4-bit nf4 on cpu" in logs) == (teacher == "codellama_34b_instruct")


@pytest.mark.slow
def test_a_teacher_tuned_on_another_format_is_refused_before_training(tmp_path):
    """The base student renders alpaca, the 34B teacher [INST]: its logits would score turn
    markers it was not tuned on."""
    folder = codellama_model_dir(LLAMA2, infilling=False, seed=1)
    out, run_dir = train(tmp_path, "teacher=codellama_34b_instruct", f"teacher.path={folder}")
    assert out.returncode != 0
    assert "the chat templates render a sample conversation differently" in out.stdout
    assert not (run_dir / "adapters").exists()
