"""distill's HumanEval+ / MBPP+ scoring beside the real ``evalplus`` 0.3.1: verdicts and speed.

Both score the same samples files (EvalPlus's format, ``completion`` or ``solution``; problems a
file lacks are filled with their canonical solution, since evalplus needs every problem, and
reported apart), each run in its own process, one after the other, ground truth warm (computed by a
first, untimed run of each). Per sample, the base and plus verdicts are compared; every
disagreement is written out with both tools' verdicts, so that it can be explained. evalplus
lives in its own virtual environment (it pins other versions than distill):

    python3 -m venv /tmp/evalplus-venv && /tmp/evalplus-venv/bin/pip install evalplus==0.3.1
    python experiments/performance/evalplus/run.py \\
        --evalplus-python /tmp/evalplus-venv/bin/python \\
        --samples humaneval_plus=FILE --samples mbpp_plus=FILE [--workers 2 3] [--repeats 2]

It writes ``agreement.csv``, ``disagreements.csv``, ``speed.csv`` and ``results.md`` beside this
file (each with the commit, date, machine and command) and prints the tables.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(HERE.parents[1]))  # experiments/

from provenance import provenance, write_csv  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "evalplus"
# distill's benchmark name -> (evalplus's --dataset, its override variable, the data file)
DATASETS = {
    "humaneval_plus": ("humaneval", "HUMANEVAL_OVERRIDE_PATH", "HumanEvalPlus-v0.1.10.jsonl.gz"),
    "mbpp_plus": ("mbpp", "MBPP_OVERRIDE_PATH", "MbppPlus-v0.2.0.jsonl.gz"),
}


def run_evalplus(
    python: str, bench: str, samples: Path, workers: int, cache: Path
) -> tuple[float, dict]:
    """Seconds and ``{(task_id, index): (base, plus)}`` of one ``evalplus.evaluate`` run."""
    dataset, variable, file = DATASETS[bench]
    with tempfile.TemporaryDirectory() as tmp:  # it writes its results beside the samples
        copy = Path(tmp) / "samples.jsonl"
        shutil.copy(samples, copy)
        env = {**os.environ, variable: str(DATA / file), "XDG_CACHE_HOME": str(cache)}
        command = [python, "-m", "evalplus.evaluate", "--dataset", dataset, "--samples", str(copy)]
        start = time.perf_counter()
        subprocess.run([*command, "--parallel", str(workers)], env=env, check=True,
                       capture_output=True)  # fmt: skip
        seconds = time.perf_counter() - start
        results = json.loads((Path(tmp) / "samples_eval_results.json").read_text())
    verdicts = {}
    for task_id, rows in results["eval"].items():
        for index, row in enumerate(rows):
            base = row["base_status"] == "pass"
            verdicts[(task_id, index)] = (base, base and row["plus_status"] == "pass")
    return seconds, verdicts


def run_distill(bench: str, samples: Path, workers: int, cache: Path) -> tuple[float, dict]:
    """Seconds and verdicts of one ``distill eval eval=<bench> eval.samples=FILE`` run."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "DISTILL_EVALPLUS_PATH": str(DATA), "DISTILL_CACHE": str(cache)}
        command = [
            sys.executable, "-m", "distill", "eval", f"eval={bench}", f"eval.samples={samples}",
            f"eval.workers={workers}", f"hydra.run.dir={tmp}", "logger=csv",
        ]  # fmt: skip
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, capture_output=True, cwd=ROOT)
        seconds = time.perf_counter() - start
        (results,) = Path(tmp, "eval").glob("*_results.jsonl")
        rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    verdicts, seen = {}, {}
    for row in rows:
        index = seen[row["task_id"]] = seen.get(row["task_id"], -1) + 1
        verdicts[(row["task_id"], index)] = (row["base_passed"], row["plus_passed"])
    return seconds, verdicts


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evalplus-python", required=True)
    parser.add_argument("--samples", action="append", required=True, help="BENCHMARK=FILE")
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--repeats", type=int, default=2, help="timed runs (0: verdicts only)")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the results files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = provenance([__file__, *argv])
    agreement, disagreements, speed = [], [], []
    with tempfile.TemporaryDirectory() as caches:
        ours_cache, theirs_cache = Path(caches, "distill"), Path(caches, "evalplus")
        for spec in args.samples:
            bench, file = spec.split("=", 1)
            samples, own = padded(bench, Path(file).resolve(), Path(caches))
            # Untimed first runs: each tool computes its expected outputs once.
            _, ours = run_distill(bench, samples, args.workers[0], ours_cache)
            _, theirs = run_evalplus(
                args.evalplus_python, bench, samples, args.workers[0], theirs_cache
            )
            name = Path(file).name
            kinds = (("samples of the file", own), ("canonical padding", set(ours) - own))
            for kind, keys in kinds:
                if keys:
                    mine = {k: ours[k] for k in keys}
                    agreement.append(agree(bench, name, kind, mine, theirs, disagreements))
            for repeat in range(args.repeats):  # interleaved, so drift hits both alike
                for workers in args.workers:
                    t_ours, _ = run_distill(bench, samples, workers, ours_cache)
                    t_theirs, _ = run_evalplus(
                        args.evalplus_python, bench, samples, workers, theirs_cache
                    )
                    for tool, seconds in (("distill", t_ours), ("evalplus 0.3.1", t_theirs)):
                        speed.append({"benchmark": bench, "samples": name, "n": len(ours),
                                      "tool": tool, "workers": workers, "repeat": repeat,
                                      "seconds": round(seconds, 2)})  # fmt: skip
    write_csv(args.out / "agreement.csv", agreement, meta)
    write_csv(args.out / "disagreements.csv", disagreements, meta)
    if speed:
        write_csv(args.out / "speed.csv", speed, meta)
    text = tables(agreement, speed, meta)
    (args.out / "results.md").write_text(text)
    print(text)


def padded(bench: str, samples: Path, folder: Path) -> tuple[Path, set[tuple[str, int]]]:
    """``samples`` with every problem it lacks filled by its canonical solution (evalplus
    scores only files that hold every problem), and the keys of the file's own samples."""
    from distill.evaluation.benchmarks import get_benchmark, load_problems

    rows = [json.loads(line) for line in samples.read_text().splitlines() if line.strip()]
    seen: dict[str, int] = {}
    own = set()
    for row in rows:
        own.add((row["task_id"], seen.setdefault(row["task_id"], 0)))
        seen[row["task_id"]] += 1
    key = get_benchmark(bench).sample_key
    missing = [p for p in load_problems(bench, None, DATA) if p.task_id not in seen]
    if not missing:
        return samples, own
    out = folder / f"{samples.stem}_padded.jsonl"
    keep = [{"task_id": r["task_id"], key: r.get(key, r.get("solution", r.get("completion")))}
            for r in rows]  # fmt: skip
    fill = [{"task_id": p.task_id, key: p.canonical_solution} for p in missing]
    out.write_text("".join(json.dumps(r) + "\n" for r in keep + fill))
    return out, own


def agree(bench: str, name: str, kind: str, ours: dict, theirs: dict, out: list[dict]) -> dict:
    for key in sorted(ours):
        if ours[key] != theirs[key]:
            out.append({
                "benchmark": bench, "samples": name, "kind": kind, "task_id": key[0],
                "index": key[1], "distill_base": ours[key][0], "distill_plus": ours[key][1],
                "evalplus_base": theirs[key][0], "evalplus_plus": theirs[key][1],
            })  # fmt: skip
    n = len(ours)
    same = sum(ours[k] == theirs[k] for k in ours)
    return {
        "benchmark": bench, "samples": name, "kind": kind, "n": n,
        "base_pass_distill": sum(v[0] for v in ours.values()),
        "base_pass_evalplus": sum(theirs[k][0] for k in ours),
        "plus_pass_distill": sum(v[1] for v in ours.values()),
        "plus_pass_evalplus": sum(theirs[k][1] for k in ours),
        "agree": same,
        "agree_pct": round(100 * same / n, 2),
    }  # fmt: skip


def tables(agreement: list[dict], speed: list[dict], meta: dict[str, str]) -> str:
    lines = [
        f"Commit {meta['commit']}, {meta['date']}, {meta['machine']}.",
        f"Command: `{meta['command']}`",
        "",
        "| benchmark | samples | which | n | base pass (distill / evalplus) "
        "| plus pass (distill / evalplus) | verdicts agree |",
        "|---|---|---|---|---|---|---|",
    ]
    for a in agreement:
        lines.append(
            f"| {a['benchmark']} | {a['samples']} | {a['kind']} | {a['n']} | "
            f"{a['base_pass_distill']} / "
            f"{a['base_pass_evalplus']} | {a['plus_pass_distill']} / {a['plus_pass_evalplus']} | "
            f"{a['agree']}/{a['n']} ({a['agree_pct']}%) |"
        )
    if speed:
        lines += ["", "| benchmark | samples | workers | distill (s) | evalplus 0.3.1 (s) "
                  "| speed-up |", "|---|---|---|---|---|---|"]  # fmt: skip
    groups: dict[tuple, dict[str, list[float]]] = {}
    for s in speed:
        groups.setdefault((s["benchmark"], s["samples"], s["workers"]), {}).setdefault(
            s["tool"], []
        ).append(s["seconds"])
    for (bench, samples, workers), times in groups.items():
        ours, theirs = min(times["distill"]), min(times["evalplus 0.3.1"])
        ratio = theirs / ours
        lines.append(
            f"| {bench} | {samples} | {workers} | {ours:.1f} | {theirs:.1f} | {ratio:.2f}x |"
        )
    if speed:
        lines.append("\nTimes are the best of the repeats, ground truth warm for both tools.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main(sys.argv[1:])
