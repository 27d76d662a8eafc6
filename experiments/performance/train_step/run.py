"""One distillation training step, ours beside TRL's GKD trainer and a plain hand-written loop.

Each arm runs in its own process (ours and the naive loop in our .venv, TRL in the peer venv), so
its peak RSS is its own and the environments never mix. Arms are interleaved and repeated; the
table gives each arm's median non-padding tokens/s over the timed steps and peak RSS, with ratios
to TRL's fastest arm and to TRL's lowest peak. See README.md beside this file.

    .venv/bin/python experiments/performance/train_step/run.py --steps 30 --warmup 3 --reps 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import RESULT_PREFIX, Spec  # noqa: E402
from prepare import MBPP, ROOT, build_cache, model_dirs, write_inputs  # noqa: E402

sys.path.insert(0, str(HERE.parents[1]))  # experiments/
from provenance import provenance, write_csv  # noqa: E402

# Versions recorded with the results: ours come from this venv, TRL's arms run in the peer venv
# (train_step/setup.sh pins the same PEFT and bitsandbytes there).
PEER_PACKAGES = ["transformers", "peft", "bitsandbytes", "lightning"]

PEERS = ROOT / "experiments" / "performance" / ".venv-peers" / "bin" / "python"
# The objective every arm trains: forward KL only (TRL's GKD has no cross-entropy term).
OBJECTIVE = ["loss=kl"]
# Our best CPU setting: the cpu_fast preset (bf16 autocast, micro-batches of 2), the 4-bit
# student dequantised straight to bf16, no LoRA dropout (as TRL's default), a bf16 teacher.
OURS_BEST = [
    "hardware=cpu_fast",
    "student.compute_dtype=bfloat16",
    "student.lora.dropout=0.0",
    "teacher.dtype=bfloat16",
]
BF16 = ["hardware.precision=bf16-mixed", "teacher.dtype=bfloat16"]
# name: (runner, our Hydra overrides, arm options)
ARMS: dict[str, tuple[str, list[str], dict]] = {
    "naive": ("naive", [], {"bf16": False}),
    "naive_bf16": ("naive", [], {"bf16": True}),
    "trl_fp32": ("trl", [], {"bf16": False, "gradient_checkpointing": False}),
    "trl_default": ("trl", [], {"bf16": True, "gradient_checkpointing": True}),
    "trl_bf16": ("trl", [], {"bf16": True, "gradient_checkpointing": False}),
    "trl_bf16_grouped": (
        "trl",
        [],
        {"bf16": True, "gradient_checkpointing": False, "group_by_length": True},
    ),
    "ours_fp32": ("ours", ["hardware.precision=32-true"], {}),
    # The steps from ours_fp32 to ours_best, one change at a time (README: what each bought).
    "ours_bf16": ("ours", BF16, {}),
    "ours_bf16_nodrop": ("ours", [*BF16, "student.lora.dropout=0.0"], {}),
    "ours_bf16_nodrop_gc": (
        "ours",
        [*BF16, "student.lora.dropout=0.0", "hardware.gradient_checkpointing=true"],
        {},
    ),
    "ours_bf16_nodrop_bf16w": (
        "ours",
        [*BF16, "student.lora.dropout=0.0", "student.compute_dtype=bfloat16"],
        {},
    ),
    "ours_best": ("ours", OURS_BEST, {}),
    "ours_cache": ("ours", [*OURS_BEST, "train.teacher_logits=cache"], {}),
}
# The matched grid: every knob ours turns, offered to TRL too, in fp32 (on a CPU without native
# bf16 the bf16 arms only emulate it). Ours always length-groups its batches.
NODROP = ["hardware.precision=32-true", "student.lora.dropout=0.0"]
MB2, GC = ["hardware.micro_batch_size=2"], ["hardware.gradient_checkpointing=true"]
TRL_FP32 = {"bf16": False, "gradient_checkpointing": False}
GROUPED = {**TRL_FP32, "group_by_length": True}
ARMS.update(
    {
        "ours_fp32_nodrop": ("ours", NODROP, {}),
        "ours_fp32_nodrop_mb2": ("ours", [*NODROP, *MB2], {}),
        "ours_fp32_nodrop_gc": ("ours", [*NODROP, *GC], {}),
        "ours_fp32_nodrop_mb2_gc": ("ours", [*NODROP, *MB2, *GC], {}),
        "trl_fp32_grouped": ("trl", [], GROUPED),
        "trl_fp32_mb2_grouped": ("trl", [], {**GROUPED, "micro_batch": 2}),
        "trl_fp32_gc_grouped": ("trl", [], {**GROUPED, "gradient_checkpointing": True}),
        "trl_fp32_mb2_gc_grouped": (
            "trl",
            [],
            {**GROUPED, "micro_batch": 2, "gradient_checkpointing": True},
        ),
    }
)
MATCHED = ["naive", "trl_fp32", *[a for a in ARMS if "fp32_" in a and a != "ours_fp32"]]
# On-policy steps (GKD with lmbda=1: every batch re-answered by the student, then distilled on
# its own samples), matched in fp32 as above, without checkpointing (TRL then generates without
# its KV cache) and with the same sampling: at most ON_POLICY_TOKENS new tokens, temperature 1,
# the full distribution (top-p 1, no top-k).
ON_POLICY_TOKENS = 64
SAMPLING = {"lmbda": 1.0, "max_new_tokens": ON_POLICY_TOKENS, "temperature": 1.0}
ARMS.update(
    {
        "ours_onpolicy": (
            "ours",
            [*NODROP, *(f"train.on_policy.{k}={v}" for k, v in SAMPLING.items())],
            {},
        ),
        "trl_gkd_onpolicy": ("trl", [], {**GROUPED, **SAMPLING}),
        # TRL's stable trainer: always on-policy, from a prompt dataset; it cannot group by length.
        "trl_distill_onpolicy": ("trl", [], {**TRL_FP32, **SAMPLING, "trainer": "distillation"}),
    }
)
ON_POLICY = ["ours_onpolicy", "trl_gkd_onpolicy", "trl_distill_onpolicy"]
DEFAULT_ARMS = ["naive", "trl_fp32", "trl_default", "trl_bf16", "ours_fp32", "ours_best"]
DEFAULT_ARMS += ["ours_cache"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arms", nargs="+", default=DEFAULT_ARMS, choices=list(ARMS))
    p.add_argument("--matched", action="store_true", help="run the matched fp32 grid (MATCHED)")
    p.add_argument("--on-policy", action="store_true", help="run the on-policy arms (ON_POLICY)")
    p.add_argument("--steps", type=int, default=8, help="timed optimizer steps per arm")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    p.add_argument("--reps", type=int, default=1, help="runs of every arm (interleaved)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per arm (1: steady on a shared machine)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="tiny random models (smoke test)")
    p.add_argument("--mbpp", type=Path, default=MBPP, help="MBPP jsonl (text + code)")
    p.add_argument("--peer-python", type=Path, default=PEERS, help="the TRL venv's python")
    p.add_argument("--work", type=Path, default=None, help="inputs folder (default: a temp dir)")
    p.add_argument("--csv", type=Path, default=None, help="write every run's figures here")
    p.add_argument("--timeout", type=int, default=1800, help="seconds per arm run")
    return p.parse_args(argv)


SMOLLM2_PAIR = ("teacher=embedded_smollm2_135m", "student=embedded_smollm2_135m_nf4")


def shared_overrides(args: argparse.Namespace, work: Path) -> list[str]:
    """Overrides of our config that every arm and the cache build share."""
    # The SmolLM2 pair, as these results were measured on (the coder pair is the default now).
    models = ["experiment=tiny_smoke"] if args.tiny else list(SMOLLM2_PAIR)
    return [
        *models,
        *OBJECTIVE,
        f"data.dataset={work / 'dataset.jsonl'}",
        f"data.max_length={args.max_length}",
        f"data.batch_size={args.batch_size}",
        f"seed={args.seed}",
    ]


def make_specs(args: argparse.Namespace, work: Path) -> dict[str, Spec]:
    """Write the inputs (and the cache when an arm needs it); one Spec per arm."""
    from arm_ours import compose_cfg

    from distill.models import load_tokenizer

    shared = shared_overrides(args, work)
    cfg = compose_cfg(shared)
    tokenizer = load_tokenizer(cfg.student.path)
    n_train = (args.warmup + args.steps) * args.batch_size
    stats = write_inputs(work, cfg, tokenizer, args.mbpp, n_train, args.seed)
    print(f"inputs: {json.dumps(stats)}", flush=True)
    if any("train.teacher_logits=cache" in ARMS[a][1] for a in args.arms):
        build_cache(work, shared, child_env(args))
    student_dir, teacher_dir = model_dirs(cfg)
    st = cfg.student
    common = {
        "work": str(work),
        "student_dir": student_dir,
        "teacher_dir": teacher_dir,
        "quantization": st.quantization,
        "double_quant": bool(st.get("double_quant", False)),
        "compute_dtype": str(st.compute_dtype),
        "lora": {
            "r": st.lora.r,
            "alpha": st.lora.alpha,
            "dropout": st.lora.dropout,
            "target_modules": list(st.lora.target_modules),
        },
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "lr": args.lr,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": args.threads,
        "seed": args.seed,
    }
    specs = {}
    for arm in args.arms:
        _, extra, options = ARMS[arm]
        cache = [f"teacher_cache.path={work / 'cache'}"] if "cache" in arm else []
        overrides = [*shared, *extra, *cache]
        specs[arm] = Spec(arm=arm, overrides=overrides, options=dict(options), **common)
    return specs


def knobs(spec: Spec) -> dict[str, object]:
    """Every setting a user of either library can turn, as this arm runs it."""
    runner, _, options = ARMS[spec.arm]
    if runner == "ours":
        from arm_ours import compose_cfg

        from distill.hardware import resolve_dtype, resolve_precision

        cfg = compose_cfg(spec.overrides)
        hw = cfg.hardware
        return {
            "teacher_dtype": str(resolve_dtype(cfg.teacher.dtype)).removeprefix("torch."),
            "dequant_dtype": str(resolve_dtype(cfg.student.compute_dtype)).removeprefix("torch."),
            "autocast": "bf16" if resolve_precision(hw).startswith("bf16") else "off",
            "micro_batch": hw.micro_batch_size or spec.batch_size,
            "checkpointing": bool(hw.gradient_checkpointing),
            "lora_dropout": cfg.student.lora.dropout,
            "length_grouped": True,
            **on_policy_knobs(cfg.train.on_policy),
        }
    trl = runner == "trl"
    return {
        "teacher_dtype": options.get("teacher_dtype", "float32"),
        "dequant_dtype": options.get("compute_dtype", spec.compute_dtype),
        "autocast": "bf16" if options.get("bf16", trl) else "off",
        "micro_batch": options.get("micro_batch", spec.batch_size),
        "checkpointing": bool(options.get("gradient_checkpointing", trl)),
        "lora_dropout": 0.0
        if trl and options.get("disable_dropout", True)
        else spec.lora["dropout"],
        "length_grouped": bool(options.get("group_by_length", False)),
        **on_policy_knobs(options),
    }


def on_policy_knobs(settings) -> dict[str, object]:
    """lmbda and, when it is not 0, the sampling settings."""
    lmbda = float(settings.get("lmbda", 0.0))
    if not lmbda:
        return {"lmbda": 0.0}
    return {
        "lmbda": lmbda,
        "max_new_tokens": int(settings.get("max_new_tokens", 0)),
        "temperature": float(settings.get("temperature", 1.0)),
    }


def peer_versions(python: Path) -> str:
    """The TRL arms' library versions, read in the peer venv."""
    if not python.exists():
        return ""
    code = "import trl, transformers, peft; print(trl.__version__, transformers.__version__, "
    code += "peft.__version__)"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        return ""
    trl, transformers, peft = done.stdout.split()
    return f"; peer venv: trl=={trl} transformers=={transformers} peft=={peft}"


def child_env(args: argparse.Namespace) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TOKENIZERS_PARALLELISM": "false"}


def run_arm(spec: Spec, args: argparse.Namespace, work: Path) -> dict | None:
    """Run one arm in its own process; its result line, or None (the reason printed)."""
    runner = ARMS[spec.arm][0]
    python = str(args.peer_python) if runner == "trl" else sys.executable
    if runner == "trl" and not Path(python).exists():
        print(f"  {spec.arm}: skipped, no peer venv at {python} (run setup.sh)", flush=True)
        return None
    path = work / f"spec-{spec.arm}.json"
    path.write_text(json.dumps(asdict(spec)))
    command = [python, str(HERE / f"arm_{runner}.py"), str(path)]
    done = subprocess.run(
        command, cwd=HERE, env=child_env(args), capture_output=True, text=True, timeout=args.timeout
    )
    lines = [x for x in done.stdout.splitlines() if x.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        print(f"  {spec.arm}: failed (rc {done.returncode})\n{done.stderr[-3000:]}", flush=True)
        return None
    return json.loads(lines[-1][len(RESULT_PREFIX) :])


def summarise(runs: list[dict]) -> list[dict]:
    """Median tokens/s and peak RSS per arm, with ratios to TRL's fastest and leanest arms."""
    arms: dict[str, list[dict]] = {}
    for r in runs:
        arms.setdefault(r["arm"], []).append(r)
    rows = []
    for arm, rs in arms.items():
        names = rs[0]["phases_s"]
        phases = {k: statistics.median(r["phases_s"].get(k, 0.0) for r in rs) for k in names}
        rows.append(
            {
                "arm": arm,
                "precision": rs[0]["precision"],
                "runs": len(rs),
                "tokens_per_s": statistics.median(r["tokens_per_s"] for r in rs),
                "peak_rss_mib": statistics.median(r["peak_rss_mib"] for r in rs),
                "step_s": statistics.median(r["seconds"] / max(r["steps"], 1) for r in rs),
                "phases_s": phases,
            }
        )
    trl = [r for r in rows if r["arm"].startswith("trl")]
    best_speed = max((r["tokens_per_s"] for r in trl), default=None)
    least_mem = min((r["peak_rss_mib"] for r in trl), default=None)
    best_step = min((r["step_s"] for r in trl), default=None)
    for r in rows:
        r["x_trl_best_tok_s"] = r["tokens_per_s"] / best_speed if best_speed else float("nan")
        r["x_trl_lowest_rss"] = r["peak_rss_mib"] / least_mem if least_mem else float("nan")
        # Steps per second: on-policy arms sample their own answers, so the batch's tokens are
        # not what a step processes.
        r["x_trl_best_steps_s"] = best_step / r["step_s"] if best_step else float("nan")
    return rows


def print_tables(rows: list[dict]) -> None:
    print("\n| arm | precision | tokens/s | peak RSS (MiB) | s/step | x TRL best tok/s ", end="")
    print("| x TRL best steps/s | x TRL lowest RSS |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['arm']} | {r['precision']} | {r['tokens_per_s']:.0f} | "
            f"{r['peak_rss_mib']:.0f} | {r['step_s']:.2f} | {r['x_trl_best_tok_s']:.2f} | "
            f"{r['x_trl_best_steps_s']:.2f} | {r['x_trl_lowest_rss']:.2f} |"
        )
    names = ["teacher_fwd", "student_fwd", "loss", "backward", "optimizer"]
    print("\nPer-step phases, seconds (other = the rest of the step: data, hooks, logging; TRL's")
    print("loss and backward are inside its `other`):\n")
    print("| arm | " + " | ".join(names) + " | other | step |")
    print("|---" * (len(names) + 3) + "|")
    for r in rows:
        p = r["phases_s"]
        other = r["step_s"] - sum(p.get(n, 0.0) for n in names)
        cells = " | ".join(f"{p[n]:.2f}" if n in p else "-" for n in names)
        print(f"| {r['arm']} | {cells} | {other:.2f} | {r['step_s']:.2f} |")


def write_results(path: Path, runs: list[dict], meta: dict[str, str]) -> None:
    fields = ["arm", "rep", "precision", "steps", "tokens", "seconds", "tokens_per_s"]
    fields += ["peak_rss_mib", "load_peak_rss_mib", "phases_s", "knobs"]
    rows = [
        {k: json.dumps(r[k]) if k in ("phases_s", "knobs") else r.get(k) for k in fields}
        for r in runs
    ]
    write_csv(path, rows, meta)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    meta = provenance(sys.argv if argv is None else [__file__, *argv], peers=PEER_PACKAGES)
    if args.matched:
        args.arms = MATCHED
    if args.on_policy:
        args.arms = ON_POLICY
    meta["versions"] += peer_versions(args.peer_python)
    with tempfile.TemporaryDirectory(prefix="train-step-bench-") as tmp:
        work = args.work or Path(tmp)
        specs = make_specs(args, work)
        arm_knobs = {arm: knobs(spec) for arm, spec in specs.items()}
        runs = []
        for rep in range(args.reps):
            order = args.arms[rep % len(args.arms) :] + args.arms[: rep % len(args.arms)]
            for arm in order:
                result = run_arm(specs[arm], args, work)
                if result is not None:
                    runs.append({**result, "rep": rep, "knobs": arm_knobs[arm]})
                    print(
                        f"  rep {rep} {arm}: {result['tokens_per_s']:.0f} tok/s, "
                        f"{result['peak_rss_mib']:.0f} MiB peak",
                        flush=True,
                    )
    if args.csv:
        write_results(args.csv, runs, meta)
    rows = summarise(runs)
    print_tables(rows)
    return rows


if __name__ == "__main__":
    main()
