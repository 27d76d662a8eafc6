"""Record a `make demo` run for the README, or print the README's table from a record.

    python experiments/demo/record.py save RUN_DIR --name coder --wall-minutes 18.2 \
        --command "make demo" --note "fresh clone, empty DISTILL_CACHE"
    python experiments/demo/record.py table coder     # the README's table and paired line

`save` writes `experiments/demo/<name>_results.json`: the run's report and pipeline metrics with
the commit, date, machine and command, so every number the README shows has a file behind it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from provenance import commit as head_commit  # noqa: E402
from provenance import cpu_model  # noqa: E402


def save(
    run_dir: Path, name: str, command: str, wall_minutes: float, note: str, commit: str | None
) -> Path:
    """`commit`: the one the run ran on (a fresh clone's), default this checkout's HEAD."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    commit = commit or head_commit()
    record = {
        "command": command,
        "commit": commit,
        "date": datetime.date.today().isoformat(),
        # the CPU decides the run's dtype (bf16 only where native) and much of its time
        "machine": f"{cpu_model()}, {len(os.sched_getaffinity(0))} CPU cores, no GPU",
        "note": note,
        "wall_minutes": wall_minutes,
        "report": (run_dir / "report.md").read_text(),
        "metrics": {
            k: v for k, v in sorted(metrics.items()) if k.startswith(("pipeline/", "export/"))
        },
    }
    out = HERE / f"{name}_results.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    return out


def table(name: str) -> str:
    """The report's table and paired line, without its title."""
    report = json.loads((HERE / f"{name}_results.json").read_text())["report"]
    return "\n".join(line for line in report.splitlines() if not line.startswith("# ")).strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    s = sub.add_parser("save")
    s.add_argument("run_dir", type=Path)
    s.add_argument("--name", required=True)
    s.add_argument("--command", required=True)
    s.add_argument("--wall-minutes", type=float, required=True)
    s.add_argument("--note", default="")
    s.add_argument("--commit", help="the commit the run ran on (default: HEAD)")
    t = sub.add_parser("table")
    t.add_argument("name")
    args = parser.parse_args()
    if args.action == "save":
        print(
            save(args.run_dir, args.name, args.command, args.wall_minutes, args.note, args.commit)
        )
    else:
        print(table(args.name))


if __name__ == "__main__":
    main()
