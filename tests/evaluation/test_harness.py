import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from transformers import BitsAndBytesConfig, LlamaForCausalLM

from distill.evaluation.harness import evaluate_model, validate_eval_config
from distill.evaluation.prompts import POSTPROCESS_VERSION

from .conftest import EvalCfg, build_tiny_llama


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("prompt_format", ["completion", "chat"])
def test_evaluate_model_end_to_end(tiny_llama, char_tokenizer, tmp_path, prompt_format) -> None:
    cfg = EvalCfg(prompt_format=prompt_format)
    out_dir = tmp_path / "eval"
    metrics = evaluate_model(tiny_llama, char_tokenizer, cfg, out_dir, "student")

    samples = _lines(out_dir / "student_samples.jsonl")
    results = _lines(out_dir / "student_results.jsonl")
    assert len(samples) == len(results) == 3
    assert [s["task_id"] for s in samples] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert all({"task_id", "completion", "raw"} <= s.keys() for s in samples)
    for r in results:
        assert {"task_id", "completion", "raw", "passed", "result"} <= r.keys()
        assert r["passed"] is False
        assert r["result"] == "timed out" or r["result"].startswith("failed: ")

    assert isinstance(metrics["eval/humaneval/pass@1"], float)
    assert metrics["eval/humaneval/pass@1"] == 0.0
    assert metrics["eval/humaneval/num_problems"] == 3
    assert metrics["eval/humaneval/num_samples"] == 3
    assert metrics["eval/humaneval/postprocess_version"] == POSTPROCESS_VERSION
    assert not (out_dir / "metrics.json").exists()


def test_evaluate_model_with_sampling(tiny_llama, char_tokenizer, tmp_path) -> None:
    cfg = EvalCfg(limit=2, max_new_tokens=4, num_samples=2, k=[1, 2], batch_size=3)
    metrics = evaluate_model(tiny_llama, char_tokenizer, cfg, tmp_path, "s")
    assert len(_lines(tmp_path / "s_results.jsonl")) == 4
    assert metrics["eval/humaneval/pass@2"] == 0.0
    assert metrics["eval/humaneval/num_samples"] == 4


def test_evaluate_model_accepts_omegaconf(tiny_llama, char_tokenizer, tmp_path) -> None:
    omegaconf = pytest.importorskip("omegaconf")
    cfg = omegaconf.OmegaConf.create({**EvalCfg(limit=1).__dict__, "k": [1]})
    metrics = evaluate_model(tiny_llama, char_tokenizer, cfg, tmp_path, "dict")
    assert metrics["eval/humaneval/num_problems"] == 1


def test_validate_reports_every_error() -> None:
    cfg = replace(EvalCfg(), benchmark="mbpp", prompt_format="raw", k=[1, 5], workers=0)
    with pytest.raises(ValueError) as info:
        validate_eval_config(cfg)
    message = str(info.value)
    for fragment in ("allowed: humaneval", "allowed: chat, completion", "eval.k=", "eval.workers="):
        assert fragment in message


def test_unknown_benchmark_fails_before_generation(char_tokenizer, tmp_path) -> None:
    with pytest.raises(ValueError, match="allowed: humaneval"):
        evaluate_model(None, char_tokenizer, EvalCfg(benchmark="mbpp"), tmp_path, "x")
    assert not any(tmp_path.iterdir())


def test_evaluate_peft_4bit_model(char_tokenizer, tmp_path) -> None:
    peft = pytest.importorskip("peft")
    pytest.importorskip("bitsandbytes")

    # hidden_size 64, not 32: bitsandbytes' CPU eval-mode weight repacking fails when a layer's
    # in_features is below its 64-element quantization block.
    build_tiny_llama(2, hidden_size=64).save_pretrained(tmp_path / "base")
    quant = BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
    )
    base = LlamaForCausalLM.from_pretrained(tmp_path / "base", quantization_config=quant)
    model = peft.get_peft_model(base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    model.train()
    metrics = evaluate_model(model, char_tokenizer, EvalCfg(limit=2), tmp_path / "eval", "qlora")
    assert metrics["eval/humaneval/pass@1"] == 0.0
    assert model.training  # the caller's mode is restored
