"""The training-step benchmark (experiments/performance/train_step): inputs, summary, and a smoke
run of its arms on the tiny random pair (each arm in its own process, as in the real benchmark)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "experiments" / "performance" / "train_step"
PEERS = BENCH.parent / ".venv-peers" / "bin" / "python"
MODULES = ("common", "prepare", "run", "arm_ours")


@pytest.fixture
def bench(monkeypatch):
    """The benchmark's modules, imported from its folder (not a package) and forgotten after."""
    monkeypatch.syspath_prepend(str(BENCH))
    for name in MODULES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    import common
    import prepare
    import run

    yield run, prepare, common
    for name in MODULES:
        sys.modules.pop(name, None)


def write_mbpp(path: Path, n: int = 40) -> Path:
    rows = [
        {
            "task_id": i,
            "text": f"Write a function f{i} that adds {i}.",
            "code": f"def f{i}(x):\r\n    return x + {i}",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_inputs_are_cut_as_our_datamodule_cuts_them(bench, tmp_path, cfg):
    run, prepare, common = bench
    from distill.data.batching.datamodule import encode
    from distill.data.store import is_validation
    from distill.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    cfg.data.max_length = 64
    stats = prepare.write_inputs(tmp_path, cfg, tokenizer, write_mbpp(tmp_path / "m.jsonl"), 8, 0)
    examples = common.read_examples(str(tmp_path))
    records = [json.loads(x) for x in (tmp_path / "dataset.jsonl").read_text().splitlines()]
    train = [r for r in records if not is_validation(r["id"], cfg.data.val_fraction)]
    assert stats["examples"] == len(examples) == len(train) == 8
    assert len(records) == 12  # and 4 held out, so our DataModule has a validation set
    for record, example in zip(train, examples, strict=True):
        ours = encode(record, tokenizer, 64)
        assert example == {"input_ids": ours["input_ids"], "labels": ours["labels"]}
        assert len(example["input_ids"]) <= 64 and example["labels"][0] == -100
    batch = common.pad_batch(examples[:3], pad_id=3)
    lengths = [len(e["input_ids"]) for e in examples[:3]]
    assert batch["attention_mask"].sum().item() == sum(lengths)
    assert batch["input_ids"].shape == (3, max(lengths))


def test_summary_ratios_are_to_trl_fastest_and_leanest(bench):
    run, _, _ = bench
    runs = [
        {"arm": "trl_a", "precision": "fp32", "tokens_per_s": 100.0, "peak_rss_mib": 4000.0},
        {"arm": "trl_b", "precision": "bf16", "tokens_per_s": 200.0, "peak_rss_mib": 5000.0},
        {"arm": "ours", "precision": "bf16", "tokens_per_s": 300.0, "peak_rss_mib": 2000.0},
        {"arm": "ours", "precision": "bf16", "tokens_per_s": 500.0, "peak_rss_mib": 3000.0},
    ]
    for r in runs:
        r.update(seconds=1.0, steps=1, phases_s={"loss": 0.5})
    rows = {r["arm"]: r for r in run.summarise(runs)}
    assert rows["ours"]["tokens_per_s"] == 400.0  # the median of its runs
    assert rows["ours"]["x_trl_best_tok_s"] == 2.0  # 400 / trl_b's 200
    assert rows["ours"]["x_trl_lowest_rss"] == 2500.0 / 4000.0  # against trl_a's 4000
    assert rows["trl_b"]["x_trl_best_tok_s"] == 1.0
    runs[1]["seconds"] = 0.5  # trl_b's one step: the fastest TRL step
    rows = {r["arm"]: r for r in run.summarise(runs)}
    assert rows["ours"]["x_trl_best_steps_s"] == 0.5  # 0.5 s against its 1 s a step


def smoke(tmp_path: Path, arms: list[str]) -> str:
    mbpp = write_mbpp(tmp_path / "mbpp.jsonl")
    command = [sys.executable, str(BENCH / "run.py"), "--tiny", "--steps", "2", "--warmup", "1"]
    command += ["--mbpp", str(mbpp), "--csv", str(tmp_path / "r.csv"), "--arms", *arms]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_naive_and_our_arms_run_and_report(tmp_path):
    out = smoke(tmp_path, ["naive", "ours_fp32", "ours_cache"])
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert len(lines) == 4, out  # a header and one run per arm: none failed
    for arm in ("naive", "ours_fp32", "ours_cache"):
        row = next(x for x in lines if x.startswith(arm + ","))
        tokens, seconds, tok_s, rss = (float(v) for v in row.split(",")[4:8])
        assert tokens > 0 and seconds > 0 and tok_s == pytest.approx(tokens / seconds)
        assert rss > 100  # MiB: the process's own peak, models and torch included
    phases = next(x for x in lines if x.startswith("ours_fp32,"))
    assert "teacher_fwd" in phases and "backward" in phases
    assert "teacher_fwd" not in next(x for x in lines if x.startswith("ours_cache,"))


@pytest.mark.slow
@pytest.mark.skipif(
    not PEERS.exists(), reason="no peer venv (experiments/performance/train_step/setup.sh)"
)
def test_trl_arm_runs_in_the_peer_venv(tmp_path):
    smoke(tmp_path, ["trl_fp32"])
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("trl_fp32,")


@pytest.mark.slow
@pytest.mark.skipif(
    not PEERS.exists(), reason="no peer venv (experiments/performance/train_step/setup.sh)"
)
def test_the_on_policy_arms_sample_and_train(tmp_path):
    out = smoke(tmp_path, ["ours_onpolicy", "trl_gkd_onpolicy"])
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert [x.split(",")[0] for x in lines[1:]] == ["ours_onpolicy", "trl_gkd_onpolicy"], out
    for line in lines[1:]:
        assert '""lmbda"": 1.0' in line and '""max_new_tokens"": 64' in line


def test_the_cpu_fast_preset_composes_with_the_benchmark_overrides(bench):
    run, _, _ = bench
    from distill.config import validate
    from distill.hardware import batch_split, trainer_kwargs
    from tests.conftest import compose_config

    cfg = compose_config("train", [*run.OBJECTIVE, *run.OURS_BEST])
    validate(cfg)
    split = batch_split(cfg.hardware, 4)
    assert (split.micro, split.accumulate) == (2, 2)  # the same global batch as hardware=cpu
    kwargs = trainer_kwargs(cfg.hardware, 4)
    assert kwargs["precision"] == "bf16-mixed" and kwargs["accumulate_grad_batches"] == 2
    assert cfg.student.compute_dtype == "bfloat16" and cfg.teacher.dtype == "bfloat16"


def test_the_matched_grid_offers_trl_every_setting_ours_runs(bench):
    """Each arm of ours in the matched grid has a TRL arm with the same teacher and dequantisation
    dtypes, autocast, micro-batch, checkpointing, LoRA dropout and length grouping."""
    run, _, common = bench

    def spec(arm: str) -> object:
        overrides = [*run.SMOLLM2_PAIR, *run.OBJECTIVE, *run.ARMS[arm][1]]
        lora = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": ["q_proj"]}
        return common.Spec(
            arm=arm, work="", student_dir="", teacher_dir="", quantization="nf4",
            double_quant=False, compute_dtype="float32", lora=lora, batch_size=4,
            max_length=256, lr=3e-4, steps=1, warmup=0, threads=1, overrides=overrides,
            options=dict(run.ARMS[arm][2]),
        )  # fmt: skip

    knobs = {arm: run.knobs(spec(arm)) for arm in run.MATCHED + run.ON_POLICY}
    ours = [a for a in run.MATCHED + run.ON_POLICY if a.startswith("ours")]
    trl = [a for a in run.MATCHED + run.ON_POLICY if a.startswith("trl")]
    assert len(ours) == 5 and len(trl) >= 5
    for arm in ours:
        twins = [t for t in trl if knobs[t] == knobs[arm]]
        assert twins, f"{arm} {knobs[arm]} has no TRL twin"
    assert knobs["ours_fp32_nodrop_mb2_gc"]["micro_batch"] == 2
    assert knobs["ours_fp32_nodrop_mb2_gc"]["checkpointing"] is True
    assert knobs["ours_fp32_nodrop"]["lora_dropout"] == 0.0
    assert knobs["ours_fp32_nodrop"]["lmbda"] == 0.0
    sampling = {"lmbda": 1.0, "max_new_tokens": run.ON_POLICY_TOKENS, "temperature": 1.0}
    assert {k: knobs["ours_onpolicy"][k] for k in sampling} == sampling
    assert knobs["trl_fp32"]["length_grouped"] is False  # TRL's default arm, kept for reference
