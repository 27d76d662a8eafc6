"""The Claude teacher against the fake Anthropic API: throughput as a fraction of the rate limit
beside a naive sequential loop with the same SDK, and dollars per 1,000 examples with Message
Batches and prompt caching beside plain requests for the same prompts. See README.md.

    .venv/bin/python experiments/performance/claude_teacher/run.py [--quick]
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

import anthropic  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from distill.cli import register_hydra  # noqa: E402
from distill.data.generation.generate import plan_requests  # noqa: E402
from distill.data.generation.ledger import Ledger  # noqa: E402
from distill.data.instructions.templates import sample_instructions  # noqa: E402
from distill.teachers.base import Answer  # noqa: E402
from distill.teachers.claude import ClaudeTeacher  # noqa: E402
from distill.teachers.claude_config import ClaudeTeacherConfig  # noqa: E402
from tests.teachers.fake_anthropic import FakeAnthropic  # noqa: E402

LATENCY_S = 0.5
# A shared prefix of about 5,000 tokens (the fake counts 4 characters a token): a style guide
# and two worked examples, above claude-haiku-4-5's 4,096-token minimum cacheable length.
GUIDE = "Write idiomatic, tested, documented code; name things for what they mean. " * 190
ADD = "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```\n"
NEG = "```python\ndef neg(a: int) -> int:\n    return -a\n```\n"
SHOTS = [
    {"role": "user", "content": "Write `add(a: int, b: int) -> int`. " * 40},
    {"role": "assistant", "content": ADD * 25},
    {"role": "user", "content": "Write `neg(a: int) -> int`. " * 40},
    {"role": "assistant", "content": NEG * 25},
]


def config(base_url: str, *overrides: str) -> ClaudeTeacherConfig:
    """conf/teacher/claude_haiku.yaml as shipped, pointed at the fake, with `overrides`."""
    register_hydra()  # the teacher's schema, its YAML's first default
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        composed = compose(config_name="teacher/claude_haiku").teacher
    dotlist = OmegaConf.from_dotlist([f"base_url={base_url}", *overrides])
    merged = OmegaConf.merge(OmegaConf.structured(ClaudeTeacherConfig), composed, dotlist)
    return OmegaConf.to_object(merged)


def plan(teacher: ClaudeTeacher, n: int, shared_prefix: bool, max_tokens: int | None = None):
    mix = ({"python": 1.0}, {"implement": 1, "complete": 1}, {"easy": 1, "medium": 1})
    instructions = sample_instructions(n, *mix, seed=1)
    if max_tokens:
        import dataclasses

        instructions = [dataclasses.replace(i, max_tokens=max_tokens) for i in instructions]
    system = GUIDE if shared_prefix else "You are an expert programmer."
    return [
        p.request
        for p in plan_requests(teacher, instructions, system, SHOTS if shared_prefix else ())
    ]


def run_ours(
    cfg: ClaudeTeacherConfig, n: int, **plan_kw
) -> tuple[list[float], list[Answer], ClaudeTeacher]:
    teacher = ClaudeTeacher(cfg, "sk-ant-bench")
    requests = plan(teacher, n, **plan_kw)
    times, answers = [], []
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger(Path(tmp) / "ledger.jsonl")
        start = time.perf_counter()
        for _, outcome in teacher.answer(requests, ledger):
            times.append(time.perf_counter() - start)
            answers.append(outcome)
        ledger.close()
    return times, answers, teacher


def run_naive(api: FakeAnthropic, requests) -> tuple[list[float], list[int]]:
    """A plain loop over the SDK's synchronous client, its default retries on."""
    client = anthropic.Anthropic(api_key="sk-ant-bench", base_url=api.base_url)
    times, outputs = [], []
    start = time.perf_counter()
    for r in requests:
        system = r.messages[0]["content"]
        message = client.messages.create(
            model="claude-haiku-4-5", max_tokens=r.max_tokens, system=system,
            messages=r.messages[1:],
        )  # fmt: skip
        times.append(time.perf_counter() - start)
        outputs.append(message.usage.output_tokens)
    return times, outputs


def steady(times: list[float], amounts: list[float]) -> float:
    """Per minute between the 10th and 90th percentile completion (burst and tail left out)."""
    order = sorted(range(len(times)), key=times.__getitem__)
    lo, hi = int(0.1 * len(order)), int(0.9 * len(order))
    window = times[order[hi]] - times[order[lo]]
    return sum(amounts[i] for i in order[lo + 1 : hi + 1]) / window * 60


def throughput_rows(quick: bool) -> list[dict]:
    rows = []
    scenarios = [
        ("requests/min", {"requests": 600}, "rate_limits.requests_per_minute=600", None, 240),
        ("output tokens/min", {"output": 48000}, "rate_limits.output_tokens_per_minute=48000",
         512, 120),
    ]  # fmt: skip
    for name, limits, override, max_tokens, n in scenarios:
        n = n // 4 if quick else n
        limit = next(iter(limits.values()))
        kind = next(iter(limits))
        with FakeAnthropic(latency_s=LATENCY_S, answer_tokens=200, rate_limits=limits,
                           rate_burst_s=2.0) as api:  # fmt: skip
            cfg = config(api.base_url, override, "max_concurrency=32", "cache.count_tokens=false")
            times, answers, teacher = run_ours(cfg, n, shared_prefix=False, max_tokens=max_tokens)
            amounts = [1 if kind == "requests" else a.usage["output_tokens"] for a in answers]
            rate = steady(times, amounts)
            rows.append({"table": "throughput", "limit": f"{limit:,} {name}", "client": "ours",
                         "n": n, "per_min": rate, "fraction": rate / limit,
                         "rate_limited": teacher.stats["errors/rate_limited"]})  # fmt: skip
            naive_requests = plan(
                teacher, max(8, n // 6), shared_prefix=False, max_tokens=max_tokens
            )
            times, outputs = run_naive(api, naive_requests)
            amounts = [1] * len(outputs) if kind == "requests" else outputs
            rate = steady(times, amounts)
            rows.append({"table": "throughput", "limit": f"{limit:,} {name}",
                         "client": "naive sequential loop", "n": len(times), "per_min": rate,
                         "fraction": rate / limit, "rate_limited": ""})  # fmt: skip
    return rows


def cost_rows(quick: bool) -> list[dict]:
    n = 50 if quick else 200
    rows = []
    for mode in ("messages", "batch"):
        for cache in (False, True):
            with FakeAnthropic(answer_tokens=300, min_cache_tokens=4096) as api:
                cfg = config(api.base_url, f"mode={mode}", f"cache.enabled={cache}",
                             "max_concurrency=16", "batch.poll_interval_s=0.05",
                             "batch.chunk_size=100", "cache.count_tokens=false")  # fmt: skip
                _, answers, _ = run_ours(cfg, n, shared_prefix=True, max_tokens=512)
                prices = {m: OmegaConf.to_container(OmegaConf.structured(c))
                          for m, c in cfg.catalog.models.items()}  # fmt: skip
                billed = api.billed_usd(prices)
                ours = sum(a.cost_usd for a in answers)
                assert abs(billed - ours) < 1e-9, (billed, ours)  # our accounting is the bill
                rows.append({"table": "cost", "mode": mode, "cache": cache, "n": n,
                             "usd_per_1000": billed / len(answers) * 1000,
                             "cache_read": api.billed_tokens()["cache_read"]})  # fmt: skip
    plain = rows[0]["usd_per_1000"]
    for row in rows:
        row["fraction_of_plain"] = row["usd_per_1000"] / plain
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a quarter of the requests")
    parser.add_argument("--out", default=str(HERE / "results.csv"))
    args = parser.parse_args()
    rows = throughput_rows(args.quick) + cost_rows(args.quick)
    keys = sorted({k for r in rows for k in r})
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    print("| limit | client | n | per minute (steady) | fraction of limit | 429s |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows[:4]:
        print(f"| {r['limit']} | {r['client']} | {r['n']} | {r['per_min']:,.0f} | "
              f"{r['fraction']:.0%} | {r['rate_limited']} |")  # fmt: skip
    print("\n| mode | prompt cache | n | $ per 1,000 examples | fraction of plain | cache reads |")
    print("|---|---|---:|---:|---:|---:|")
    for r in rows[4:]:
        cache = "on" if r["cache"] else "off"
        print(f"| {r['mode']} | {cache} | {r['n']} | {r['usd_per_1000']:.3f} | "
              f"{r['fraction_of_plain']:.0%} | {r['cache_read']:,} |")  # fmt: skip


if __name__ == "__main__":
    main()
