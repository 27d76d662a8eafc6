"""The study's objectives table: each loss arm of `experiment=coder_loss_ablation` against the
untrained student, on the fixed half of HumanEval (task ids 0-81).

    python experiments/prune_heal/objectives.py outputs/prune_heal/objectives_seed0 [more sweeps]

Each finished job (its trained student scored) is one arm, named `<loss> s<seed>`; the teacher and
the untrained student come from the job that scored them (the others read them from `baselines=`).
Per arm: pass@1 with its 95% bootstrap interval over problems, held-out CE, the paired permutation
test against the untrained student and the share of the teacher-student gap recovered (as in
`headline.py`). Writes `objectives.csv` (with command, commit, date and machine),
`objectives_per_problem.csv` (every model's pass on every problem, so later tables need no
rerun), `objectives.md` and `objectives.png` next to this file; arms can be added as they finish:
arms already in the committed tables that the sweeps given no longer hold are carried over with
the commit, date and machine they were measured with.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import yaml
from headline import (
    Model,
    baseline_models,
    finished_jobs,
    pipeline_model,
    rows_for,
    write_table,
)

from distill.evaluation.report import paired_comparison

HERE = Path(__file__).resolve().parent


def overrides(job: Path) -> dict[str, str]:
    pairs = yaml.safe_load((job / ".hydra/overrides.yaml").read_text())
    return dict(p.split("=", 1) for p in pairs)


def models(sweeps: list[Path]) -> list[Model]:
    """The teacher, the untrained student and each arm, named `<loss> s<seed>`."""
    jobs = finished_jobs(sweeps)
    trained = []
    for job in jobs:
        chosen = overrides(job)
        name = f"{chosen['loss']} s{chosen.get('seed', '0')}"
        trained.append(pipeline_model(job, "student_after", name))
    return baseline_models(jobs) + trained


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


def carried(out: Path, present: set[str]) -> tuple[list[Model], dict[str, dict[str, str]]]:
    """The arms of the committed tables in `out` that the sweeps given no longer hold (run
    outputs are not kept between sessions): their per-problem passes, held-out CE and command,
    and the commit, date and machine they were measured with."""
    per_problem, table = out / "objectives_per_problem.csv", out / "objectives.csv"
    if not per_problem.is_file() or not table.is_file():
        return [], {}
    passes: dict[str, dict[str, float]] = {}
    with per_problem.open() as f:
        for row in csv.DictReader(f):
            passes.setdefault(row["model"], {})[row["task_id"]] = float(row["pass"])
    with table.open() as f:
        meta = {row["model"]: row for row in csv.DictReader(f)}
    kept = [n for n in passes if n not in present and n in meta and " s" in n]
    models = [(n, passes[n], float(meta[n]["heldout_ce"]), meta[n]["command"]) for n in kept]
    stamps = {n: {k: meta[n][k] for k in ("commit", "date", "machine")} for n in kept}
    return models, stamps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    found = models(args.sweeps)
    kept, stamps = carried(args.out, {name for name, _, _, _ in found})
    found = found[:2] + kept + found[2:]  # teacher, untrained student, then arms in run order
    rows = rows_for("humaneval 0-81", found)
    for row in rows:
        row.update(stamps.get(str(row["model"]), {}))
    against_control(rows, found)
    with (args.out / "objectives_per_problem.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["model", "task_id", "pass"])
        for name, passes, _, _ in found:
            writer.writerows([name, task, passes[task]] for task in sorted(passes))
    versus = [r for r in rows if "vs_ce_kl" in r]
    extra = ""
    if versus:
        extra = "\n\n| arm | gained / lost vs ce_kl | p |\n|---|---|---|\n" + "\n".join(
            f"| {r['model']} | {r['vs_ce_kl']} | {r['vs_ce_kl_p']:.3g} |" for r in versus
        )
    text = write_table(rows, args.out, "objectives", extra)
    print(text)


if __name__ == "__main__":
    main()
