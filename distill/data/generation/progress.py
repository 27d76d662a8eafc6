"""What a generate run shows: a progress bar while it runs and a summary table at the end."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

from tqdm.auto import tqdm

from distill.teachers.retry import ERROR_CLASSES


class Progress:
    """A tqdm bar over the requests of one run: done, failed, cache hits, cost, throughput.

    Args:
        total: requests to ask.
        name: the teacher, for the bar's label.
        stats: the teacher's live counters (`cache/hits`, ...), read as the bar updates.
        skipped: requests answered before (stored or recovered), shown in the label.
    """

    def __init__(self, total: int, name: str, stats: Mapping[str, Any], skipped: int = 0) -> None:
        self.stats, self.start = stats, time.perf_counter()
        self.counts: Counter[str] = Counter()
        self.bar = tqdm(
            total=total, desc=f"{name} ({skipped} stored)", unit="req", disable=total == 0
        )

    def update(self, ok: bool, cost_usd: float) -> None:
        self.counts["done" if ok else "failed"] += 1
        self.counts["cost_usd"] += cost_usd
        minutes = max(time.perf_counter() - self.start, 1e-6) / 60
        self.bar.set_postfix_str(
            f"done={self.counts['done']} failed={self.counts['failed']} "
            f"cached={self.stats.get('cache/hits', 0)} ${self.counts['cost_usd']:.4f} "
            f"{self.counts['done'] / minutes:.0f}/min",
            refresh=False,
        )
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def summary_table(s: Mapping[str, Any]) -> str:
    """The end-of-run table from a generate summary (the `generate/...` metrics)."""
    g = {k.removeprefix("generate/"): v for k, v in s.items()}
    errors = ", ".join(f"{k} {g[f'errors/{k}']}" for k in ERROR_CLASSES if g.get(f"errors/{k}"))
    failed = ", ".join(
        f"{k.removeprefix('failed/')} {v}" for k, v in g.items() if k.startswith("failed/") and v
    )
    budget = f" (budget ${g['budget_usd']:.2f})" if g.get("budget_usd") else ""
    rows = [
        ("instructions", g.get("requested", 0)),
        ("already stored", g.get("already_stored", 0)),
        ("recovered from the ledger", g.get("recovered", 0)),
        ("asked", g.get("asked", 0)),
        ("answered", g.get("answered", 0)),
        ("failed", f"{g.get('failed', 0)}  {failed}".rstrip()),
        ("failed earlier, skipped", g.get("failed_earlier", 0)),
        ("not sent (stopped)", g.get("not_sent", 0)),
        ("in flight at a crash, re-sent", g.get("inflight_rebilled", 0)),
        ("errors", f"{g.get('retries', 0)} retries  {errors}".rstrip()),
        (
            "prompt cache",
            f"{g.get('cache/hits', 0)} hits ({g.get('cache/read_tokens', 0):,} tokens read), "
            f"{g.get('cache/writes', 0)} writes ({g.get('cache/write_5m_tokens', 0):,} 5m + "
            f"{g.get('cache/write_1h_tokens', 0):,} 1h tokens)",
        ),
        ("with code / syntax ok", f"{g.get('with_code', 0)} / {g.get('syntax_ok', 0)}"),
        (
            "cost",
            f"${g.get('cost_usd', 0):.4f} this run, ${g.get('cost_usd_total', 0):.4f} in all"
            f"{budget}",
        ),
        ("throughput", f"{g.get('answers_per_min', 0):.1f} answers/min"),
        ("records", g.get("records", 0)),
    ]
    if g.get("batch/submitted") or g.get("batch/resumed"):
        rows.append(
            (
                "message batches",
                f"{g.get('batch/submitted', 0)} submitted, {g.get('batch/resumed', 0)} resumed, "
                f"{g.get('batch/adopted', 0)} adopted, {g.get('batch/expired', 0)} expired, "
                f"{g.get('batch/errored', 0)} errored, {g.get('batch/resubmitted', 0)} resubmitted",
            )
        )
    if g.get("stopped"):
        rows.append(("stopped", f"{g['stopped']}: {g.get('stop_message', '')}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)
