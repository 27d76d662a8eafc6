"""What every results file records about the run that made it: commit, date, machine, command.

Standard library only, so a benchmark running in a peer's virtual environment can use it too:

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "experiments"))
    from provenance import provenance, write_csv
    meta = provenance(sys.argv, peers=["trl", "transformers"])
    write_csv(HERE / "results.csv", rows, meta)
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIELDS = ("commit", "date", "machine", "command", "versions")


def commit() -> str:
    """The checkout's short commit, `+dirty` when tracked files differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{head}+dirty" if dirty else head


def cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((x.split(":", 1)[1].strip() for x in lines if x.startswith("model name")), "")
    flags = next((x.split(":", 1)[1].split() for x in lines if x.startswith("flags")), [])
    # Whether bf16 is native decides which precision wins on a CPU (distill.hardware).
    bf16 = "bf16" if {"avx512_bf16", "amx_bf16"} & set(flags) else "no native bf16"
    return f"{model or platform.machine()} ({bf16})"


def machine() -> str:
    """CPU model, cores, GPU (when torch is loaded and sees one), torch build."""
    parts = [cpu_model(), f"{os.cpu_count()} cores"]
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        parts.append(torch.cuda.get_device_name(0))
    else:
        parts.append("no GPU")
    parts.append(f"torch {version('torch')}")
    return ", ".join(parts)


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def command_line(argv: list[str]) -> str:
    """`argv` as a command to paste, the script's path relative to the repository root."""
    script = Path(argv[0]).resolve()
    try:
        script = script.relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join(["python", str(script), *argv[1:]])


def provenance(argv: list[str], peers: list[str] = ()) -> dict[str, str]:
    """The fields of `FIELDS` for a run started with `argv`; `versions` names torch and `peers`."""
    packages = ["torch", *peers]
    return {
        "commit": commit(),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "command": command_line(argv),
        "versions": " ".join(f"{p}=={version(p)}" for p in packages),
    }


def write_csv(path: Path, rows: list[dict], meta: dict[str, str]) -> None:
    """`rows` with `meta` on every row (the header of an empty file still names its fields)."""
    rows = [{**row, **meta} for row in rows]
    fields = list(dict.fromkeys(k for row in rows for k in row)) or list(meta)
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
