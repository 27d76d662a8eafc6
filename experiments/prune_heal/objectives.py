"""The study's objectives table: each loss arm of `experiment=coder_loss_ablation` against the
untrained student, on the fixed half of HumanEval (task ids 0-81).

    python experiments/prune_heal/objectives.py outputs/prune_heal/objectives_seed0 [more sweeps]

Each finished job (its trained student scored) is one arm, named `<loss> s<seed>`; the teacher and
the untrained student come from the job that scored them (the others read them from `baselines=`).
Per arm: pass@1 with its 95% bootstrap interval over problems, held-out CE, the paired permutation
test against the untrained student and the share of the teacher-student gap recovered (as in
`headline.py`). Writes `objectives.csv` (with command, commit, date and machine),
`objectives_per_problem.csv` (every model's pass on every problem, so later tables need no
rerun), `objectives.md` and `objectives.png` next to this file; arms can be added as they finish.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import yaml
from headline import _command, _passes, markdown, plot, provenance, rows_for

from distill.evaluation.report import paired_comparison

HERE = Path(__file__).resolve().parent


def overrides(job: Path) -> dict[str, str]:
    pairs = yaml.safe_load((job / ".hydra/overrides.yaml").read_text())
    return dict(p.split("=", 1) for p in pairs)


def models(sweeps: list[Path]) -> list[tuple[str, dict[str, float], float | None, str]]:
    """(model, per-problem pass@1, held-out CE, command): teacher, untrained student, each arm."""
    jobs = sorted(
        j for s in sweeps for j in s.iterdir() if (j / "eval/student_after_results.jsonl").is_file()
    )
    if not jobs:
        raise SystemExit(f"{sweeps}: no finished job (no */eval/student_after_results.jsonl)")
    found = []
    for name in ("teacher", "student_before"):
        job = next((j for j in jobs if (j / f"eval/{name}_results.jsonl").is_file()), None)
        if job is None:
            raise SystemExit(f"no job of {sweeps} scored the {name} (eval/{name}_results.jsonl)")
        ce = json.loads((job / "metrics.json").read_text())[f"pipeline/{name}/ce"]
        found.append(
            (name, _passes(job / f"eval/{name}_results.jsonl"), ce, _command(job, "pipeline"))
        )
    for job in jobs:
        arm = f"{overrides(job)['loss']} s{overrides(job).get('seed', '0')}"
        ce = json.loads((job / "metrics.json").read_text())["pipeline/student_after/ce"]
        results = job / "eval/student_after_results.jsonl"
        found.append((arm, _passes(results), ce, _command(job, "pipeline")))
    return found


def against_control(rows: list[dict], found: list) -> None:
    """Each arm against `ce_kl` of its seed (the arms that add a term to it, and the others),
    paired per problem: the columns `vs_ce_kl` (gained / lost) and `vs_ce_kl_p`."""
    passes = {name: p for name, p, _, _ in found}
    for row in rows:
        name = str(row["model"])
        control = "ce_kl " + name.split(" ")[-1]
        if " s" not in name or name == control or control not in passes:
            continue
        paired = paired_comparison(passes[name], passes[control], (name, control))
        row["vs_ce_kl"] = f"{paired['gained']} / {paired['lost']}"
        row["vs_ce_kl_p"] = paired["p_value"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    found = models(args.sweeps)
    rows = rows_for("humaneval 0-81", found)
    against_control(rows, found)
    stamp = provenance()
    fields = list(dict.fromkeys(k for r in rows for k in r)) + list(stamp)
    with (args.out / "objectives.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({**r, **stamp} for r in rows)
    with (args.out / "objectives_per_problem.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "task_id", "pass"])
        for name, passes, _, _ in found:
            writer.writerows([name, task, passes[task]] for task in sorted(passes))
    text = markdown(rows)
    versus = [r for r in rows if "vs_ce_kl" in r]
    if versus:
        text += "\n\n| arm | gained / lost vs ce_kl | p |\n|---|---|---|\n" + "\n".join(
            f"| {r['model']} | {r['vs_ce_kl']} | {r['vs_ce_kl_p']:.3g} |" for r in versus
        )
    (args.out / "objectives.md").write_text(text + "\n")
    plot(rows, args.out / "objectives.png")
    print(text)


if __name__ == "__main__":
    main()
