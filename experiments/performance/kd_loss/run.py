"""KD loss forward+backward: peak memory and CPU time of ours against the dense loss and its peers.

Memory: one fresh child process per (method, case), glibc told to give large blocks back at once
(MALLOC_MMAP_THRESHOLD_), the kernel's peak-RSS mark reset after the inputs exist and one small
warm-up step ran; the figure is the peak RSS above that baseline. Time: every method in one process,
round-robin, one thread; the ratio to naive is the median over repetitions of the paired ratios.
Values: each method's loss and gradients against naive's. See README.md beside this file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from itertools import product
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # experiments/
from methods import (
    DTYPES,
    METHODS,
    Config,
    Inputs,
    build,
    make_inputs,
    naive,
    step,
    upcast,
    value_offset,
)
from provenance import provenance, write_csv

PEERS = ["trl", "torchtune", "liger-kernel"]

MIB = 2**20
QUICK = {"vocab": 2048, "hidden": 256, "teacher_hidden": 64}
# The student heads measured: CodeLlama-7B's (the mission's student) and the embedded coder
# pair's (Qwen2.5-Coder-0.5B: a 151,936-token vocabulary on a narrow model, where the head
# dominates the step).
SHAPES = {"7b": {"vocab": 32016, "hidden": 4096}, "coder": {"vocab": 151936, "hidden": 896}}
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def status_mib(key: str) -> float:
    text = open("/proc/self/status").read()
    return int(re.search(rf"{key}:\s+(\d+) kB", text).group(1)) / 1024


def child(spec: dict) -> None:
    """Measure one method on one case in this fresh process; print a JSON line."""
    torch.set_num_threads(spec.pop("threads"))
    name, liger_compiled = spec.pop("method"), spec.pop("liger_compiled")
    fn = build(name, liger_compiled)
    cfg = Config(**spec)
    # Warm-up on a few rows: imports, kernels and thread pools are set up before the baseline.
    small = make_inputs(Config(**{**spec, "seq": min(64, cfg.seq)}))
    step(fn, small)
    del small
    x = make_inputs(cfg)
    baseline = status_mib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM (peak RSS) to the current RSS
    step(fn, x)
    peak = status_mib("VmHWM")
    print(json.dumps({"baseline_mib": baseline, "peak_mib": peak - baseline}))


def measure_memory(name: str, cfg: Config, args: argparse.Namespace) -> float:
    spec = {**asdict(cfg), "method": name, "threads": args.threads}
    spec["liger_compiled"] = args.liger_compiled
    env = {**os.environ, **CHILD_ENV, "OMP_NUM_THREADS": str(args.threads)}
    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"  {name} {cfg.label}: child failed\n{done.stderr[-2000:]}", file=sys.stderr)
        return float("nan")
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"]


def rel_diff(a: torch.Tensor | None, ref: torch.Tensor | None) -> tuple[float, float]:
    """(max |a - ref|, that over max |ref|) in fp32."""
    if a is None or ref is None:
        return float("nan"), float("nan")
    err = (a.float() - ref.float()).abs().max().item()
    return err, err / max(ref.float().abs().max().item(), 1e-30)


def check_values(names: list[str], fns: dict, x: Inputs) -> dict[str, dict]:
    """Run each method once (also its warm-up) and compare it with naive in fp32 (on the same,
    bf16-rounded values in bf16 cases, so naive's own bf16 error shows too)."""
    ref = x if x.hidden.dtype == torch.float32 else upcast(x)
    ref_value = step(naive, ref)
    ref_gh = ref.hidden.grad.clone()
    ref_gw = None if ref.weight.grad is None else ref.weight.grad.clone()
    del ref
    rows = {}
    for name in names:
        value = step(fns[name], x) - value_offset(name, x)
        loss_err = abs(value - ref_value)
        gh_abs, gh_rel = rel_diff(x.hidden.grad, ref_gh)
        gw_abs, gw_rel = rel_diff(x.weight.grad, ref_gw)
        rows[name] = {
            "loss": value,
            "loss_abs_diff": loss_err,
            "loss_rel_diff": loss_err / max(abs(ref_value), 1e-30),
            "grad_h_abs_diff": gh_abs,
            "grad_h_rel_diff": gh_rel,
            "grad_w_rel_diff": gw_rel,
        }
    x.clear_grads()
    return rows


def time_methods(names: list[str], fns: dict, x: Inputs, reps: int) -> dict[str, dict]:
    """Round-robin (order rotated each repetition); CPU seconds of each step."""
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.process_time()
            step(fns[name], x)
            times[name].append(time.process_time() - start)
        x.clear_grads()
    ratios = {n: [t / b for t, b in zip(times[n], times["naive"], strict=True)] for n in names}
    return {
        n: {"cpu_s": statistics.median(times[n]), "ratio": statistics.median(ratios[n])}
        for n in names
    }


def targets(cfg: Config) -> float:
    """The issue's memory target in MiB: 150 with a frozen head; with a trainable one, the weight
    gradient itself (V*H in the head's dtype) plus 100."""
    if cfg.head == "frozen":
        return 150.0
    return cfg.vocab * cfg.hidden * DTYPES[cfg.dtype].itemsize / MIB + 100.0


def run_case(cfg: Config, args: argparse.Namespace) -> list[dict]:
    names = ["naive"] + [m for m in args.methods if m != "naive"]
    rows = {n: {"case": cfg.label, "method": n} for n in names}
    if not args.no_memory:
        for name in names:
            rows[name]["peak_mib"] = measure_memory(name, cfg, args)
            print(f"  memory {cfg.label} {name}: {rows[name]['peak_mib']:.0f} MiB", flush=True)
    if not args.no_time:
        fns = {n: build(n, args.liger_compiled) for n in names}
        x = make_inputs(cfg)
        for name, found in check_values(names, fns, x).items():
            rows[name].update(found)
        for name, found in time_methods(names, fns, x, args.reps).items():
            rows[name].update(found)
        del x
    for row in rows.values():
        row["target_mib"] = targets(cfg)
    return list(rows.values())


def fmt(row: dict, key: str, spec: str) -> str:
    value = row.get(key)
    return "" if value is None or value != value else format(value, spec)


def print_table(rows: list[dict]) -> None:
    head = (
        "| shape | case | method | peak MiB | target MiB | CPU s | x naive | loss | abs dloss "
        "| grad h rel | grad W rel |"
    )
    print("\n" + head + "\n|" + "---|" * 11)
    for r in rows:
        cells = [
            r["shape"],
            r["case"],
            r["method"],
            fmt(r, "peak_mib", ",.0f"),
            fmt(r, "target_mib", ",.0f"),
            fmt(r, "cpu_s", ".2f"),
            fmt(r, "ratio", ".2f"),
            fmt(r, "loss", ".4f"),
            fmt(r, "loss_abs_diff", ".1e"),
            fmt(r, "grad_h_rel_diff", ".1e"),
            fmt(r, "grad_w_rel_diff", ".1e"),
        ]
        print("| " + " | ".join(cells) + " |")
    print("\nTargets (ours): frozen head <= 150 MiB; trainable <= V*H*itemsize + 100 MiB;")
    print("time <= 1.1x naive. Diffs are against naive in fp32 on the same values.")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", nargs="+", choices=list(SHAPES), default=["7b"])
    p.add_argument("--seq", type=int, nargs="+", default=[512, 2048])
    p.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=["fp32", "bf16"])
    heads = ["frozen", "trainable"]
    p.add_argument("--head", nargs="+", choices=heads, default=heads)
    p.add_argument("--methods", nargs="+", default=list(METHODS), help="also ours:<rows> ...")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per method")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="V=2048, H=256, T=64/128: a smoke test")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-time", action="store_true", help="no timing and no value check")
    p.add_argument("--liger-compiled", action="store_true", help="Liger with torch.compile")
    p.add_argument("--csv", help="also write the rows here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for name in args.methods:
        build(name)  # unknown names fail before any work
    if args.quick and args.seq == [512, 2048]:
        args.seq = [64, 128]
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        child(json.loads(args.child))
        return
    torch.set_num_threads(args.threads)
    meta = provenance(sys.argv if argv is None else [__file__, *argv], peers=PEERS)
    all_rows = []
    for name, seq, dtype, head in product(args.shape, args.seq, args.dtype, args.head):
        shape = QUICK if args.quick else SHAPES[name]
        cfg = Config(seq=seq, dtype=dtype, head=head, **shape)
        print(f"case {name} {cfg.label} V={cfg.vocab} H={cfg.hidden}", flush=True)
        all_rows += [
            {"shape": name, "vocab": cfg.vocab, "hidden": cfg.hidden, **row}
            for row in run_case(cfg, args)
        ]
        if args.csv:  # after every case, so a long run stopped midway keeps what it measured
            write_csv(Path(args.csv), all_rows, meta)
    print_table(all_rows)


if __name__ == "__main__":
    main()
