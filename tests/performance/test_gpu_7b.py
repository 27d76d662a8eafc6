"""The 7B QLoRA check's CPU dry run (tiny shape): both modes train and report speed and memory."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "performance" / "gpu_7b.py"
ARGS = ["--dry-run", "--warmup", "1", "--steps", "2"]


def check_report(report: dict) -> None:
    assert report["shape"]["hidden_size"] == 64 and report["args"]["seq"] == 64
    by_mode = {r["mode"]: r for r in report["results"]}
    assert set(by_mode) == {"cache", "online"}
    for mode, result in by_mode.items():
        assert len(result["loss"]) == 3 and all(math.isfinite(x) for x in result["loss"])
        # the same batch three times: the LoRA adapters (through 4-bit + checkpointing) learn it
        assert result["loss"][-1] < result["loss"][0], mode
        assert result["tokens_per_s"] > 0
        memory = result["memory_bytes"]
        assert memory["source"].startswith("process RSS")
        assert all(memory[k] > 0 for k in ["weights_4bit", "weights_other", "adapters"])
        assert memory["peak"] >= memory["resident"] > 0 and memory["activations"] >= 0
    cache, online = by_mode["cache"]["memory_bytes"], by_mode["online"]["memory_bytes"]
    # AdamW keeps two fp32 moments per adapter weight (plus a step counter each)
    assert 2 * cache["adapters"] <= cache["optimizer"] < 2.1 * cache["adapters"]
    assert cache["teacher"] == 0 and online["teacher"] > 0
    # 4-bit with double quantisation: about half a byte per weight of the decoder's linear layers
    linear_params = 2 * (4 * 64 * 64 + 3 * 64 * 172)
    assert 0.5 <= cache["weights_4bit"] / linear_params < 0.75


def test_dry_run_in_process_trains_both_modes(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("gpu_7b", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "gpu_7b.json"
    script.main([*ARGS, "--out", str(out)])
    assert "tokens/s" in capsys.readouterr().out
    check_report(json.loads(out.read_text()))


@pytest.mark.slow
def test_dry_run_command_line(tmp_path):
    out = tmp_path / "gpu_7b.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(SCRIPT), *ARGS, "--out", str(out)]
    run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "tokens/s" in run.stdout and "peak" in run.stdout
    check_report(json.loads(out.read_text()))


def test_dry_run_layer_wise_modes_train_on_their_mapped_layers(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_7b", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    results = {}
    for mode in ("attn", "feature"):
        out = tmp_path / f"{mode}.json"
        script.main([*ARGS, "--mode", mode, "--layers", "last_k=1", "--out", str(out)])
        (result,) = json.loads(out.read_text())["results"]
        results[mode] = result
    assert [r["mode"] for r in results.values()] == ["attn (last_k=1)", "feature (last_k=1)"]
    for result in results.values():
        assert len(result["loss"]) == 3 and result["loss"][-1] < result["loss"][0]
        assert result["memory_bytes"]["teacher"] > 0
    # the preset's layer-wise part is in the loss: feature matching adds its MSE to CE + KL
    assert results["feature"]["loss"][0] != results["attn"]["loss"][0]
    loss = script.build_loss_for("attn", "last_k=2")
    assert loss.layers_read(2, 2) == {"attentions": {0, 1}, "teacher_attentions": {0, 1}}


LLAMA2 = Path(__file__).resolve().parents[3] / "shared/data/llama2_tokenizer/tokenizer.model"


@pytest.mark.skipif(not LLAMA2.exists(), reason="the Llama 2 tokenizer (shared data) is missing")
def test_dry_run_trainer_mode_goes_through_distill_train_machinery(tmp_path):
    pytest.importorskip("sentencepiece", reason="building the tokenizer needs sentencepiece")
    spec = importlib.util.spec_from_file_location("gpu_7b", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "trainer.json"
    script.main([*ARGS, "--seq", "192", "--mode", "trainer", "--out", str(out)])
    (result,) = json.loads(out.read_text())["results"]
    assert result["mode"] == "trainer" and len(result["loss"]) == 3
    assert all(math.isfinite(x) for x in result["loss"]) and result["tokens_per_s"] > 0
    batch = result["batch"]
    # the CodeLlama-shaped tokenizer in the alpaca format: <s>, "Bel", "ow", "▁is"
    assert batch["first_ids"] == [1, 21140, 340, 338]
    assert batch["eos_labels_per_row"] == [1] and batch["scored"] > 50
