"""Instruction templates: (language x task kind x difficulty) prompts, sampled to exact quotas.

A mixture is a weight per axis. `mixture.mixture_quotas` turns the weights into one integer count
per joint cell (largest remainder, controlled so that each axis's totals are its own quotas): a
10,000-example run gets exactly the asked share of every language, kind and difficulty. Each cell
draws distinct prompts from its spec pool x topic seeds (and, with `data.seed_snippets`, from real
code snippets, OSS-Instruct style). Prompts depend only on the seed and the cell, and a bigger run
extends a smaller one's prompts: a grown run pays only for the new ones.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.data.instructions.languages import LANGUAGES as LANGUAGE_TABLE
from distill.data.instructions.mixture import mixture_quotas, quotas  # noqa: F401 (quotas: public API)
from distill.data.instructions.prompts import POOLS, TASK_KINDS, render, render_snippet
from distill.data.instructions.specs import ALGORITHMS, DATA_STRUCTURES, FUNCTION_SPECS, TOPICS

LANGUAGES = tuple(LANGUAGE_TABLE)
DIFFICULTIES = ("easy", "medium", "hard")
PYTHON_SPECS = [(s.difficulty, s.name, s.description) for s in FUNCTION_SPECS]  # the old table
SPEC_POOLS = {
    "functions": FUNCTION_SPECS,
    "data_structures": DATA_STRUCTURES,
    "algorithms": ALGORITHMS,
}

# Output budget (max_tokens) per kind at "easy"; scaled by difficulty and language verbosity.
KIND_TOKENS = {
    "implement": 512, "complete": 512, "explain_then_code": 640, "algorithm": 768,
    "write_tests": 896, "data_structure": 896, "fix_bug": 768, "refactor": 896, "optimise": 896,
}  # fmt: skip
DIFFICULTY_SCALE = {"easy": 1.0, "medium": 1.5, "hard": 2.0}
LANGUAGE_SCALE = {
    "python": 1.0,
    "javascript": 1.1,
    "go": 1.2,
    "rust": 1.2,
    "cpp": 1.25,
    "java": 1.3,
}
SNIPPET_TOKENS = 256  # the problem statement an OSS-Instruct answer writes first


@dataclass(frozen=True)
class Instruction:
    """One prompt for the teacher, with the mixture cell it belongs to.

    Attributes:
        max_tokens: the output budget for this prompt (a teacher reserves rate limits from it).
        source: what the prompt was built from: `spec:<name>[@<topic index>]` or `snippet:<n>`.
    """

    language: str
    task_kind: str
    difficulty: str
    prompt: str
    max_tokens: int = 1024
    source: str = ""


def max_tokens_for(task_kind: str, difficulty: str, language: str, scale: float = 1.0) -> int:
    """A realistic output budget, rounded up to a multiple of 64 and capped at 8192."""
    raw = KIND_TOKENS.get(task_kind, 768) * DIFFICULTY_SCALE.get(difficulty, 1.5)
    raw *= LANGUAGE_SCALE.get(language, 1.2) * scale
    return int(min(8192, -(-raw // 64) * 64))


def check_mixture(
    languages: Mapping[str, float],
    task_kinds: Mapping[str, float],
    difficulties: Mapping[str, float],
) -> list[str]:
    """Names every axis value that has no templates yet."""
    problems = []
    for axis, given, known in (
        ("languages", languages, LANGUAGES),
        ("task_kinds", task_kinds, TASK_KINDS),
        ("difficulties", difficulties, DIFFICULTIES),
    ):
        unknown = sorted(set(given) - set(known))
        if unknown:
            problems.append(
                f"data.{axis}: no templates for {unknown}; available: {', '.join(known)}"
            )
    return problems


def sample_instructions(
    total: int,
    languages: Mapping[str, float],
    task_kinds: Mapping[str, float],
    difficulties: Mapping[str, float],
    seed: int = 0,
    *,
    snippets: Mapping[str, list[str]] | None = None,
    seed_fraction: float = 0.5,
    max_tokens_scale: float = 1.0,
) -> list[Instruction]:
    """`total` distinct instructions hitting the mixture's quotas exactly, in a seeded order.

    Args:
        snippets: real code snippets per language (`load_snippets`); up to `seed_fraction` of
            each cell's prompts then show one and ask for a problem inspired by it.
        max_tokens_scale: multiplies every prompt's output budget.

    Raises:
        ValueError: when a cell asks for more distinct prompts than its specs x topics hold.
    """
    counts = mixture_quotas([dict(languages), dict(task_kinds), dict(difficulties)], total)
    out: list[Instruction] = []
    for (lang, kind, diff), count in counts.items():
        if count:
            pool = (snippets or {}).get(lang, [])
            cell = _cell(lang, kind, diff, count, seed, pool, seed_fraction)
            budget = max_tokens_for(kind, diff, lang, max_tokens_scale)
            for prompt, source in cell:
                extra = SNIPPET_TOKENS if source.startswith("snippet") else 0
                out.append(Instruction(lang, kind, diff, prompt, budget + extra, source))
    random.Random(seed).shuffle(out)
    return out


def _cell(
    lang: str, kind: str, diff: str, count: int, seed: int, pool: list[str], fraction: float
) -> list[tuple[str, str]]:
    """`count` distinct (prompt, source) pairs of one cell; a prefix of any larger count's."""
    rng = random.Random(f"{seed}/{lang}/{kind}/{diff}")
    n_snippets = min(len(pool), round(count * fraction)) if pool else 0
    order = rng.sample(range(len(pool)), len(pool)) if pool else []
    out = [(render_snippet(kind, lang, diff, pool[i]), f"snippet:{i}") for i in order[:n_snippets]]
    specs = [s for s in SPEC_POOLS[POOLS.get(kind, "functions")] if s.difficulty == diff]
    topics: list[str | None] = [None, *TOPICS]
    capacity = len(specs) * len(topics)
    if count - n_snippets > capacity:
        raise ValueError(
            f"data: the mixture asks for {count - n_snippets} {lang}/{kind}/{diff} prompts but "
            f"only {capacity} distinct ones exist ({len(specs)} specs x {len(topics)} topics); "
            "lower data.num_examples, widen the mixture or give data.seed_snippets"
        )
    rng.shuffle(specs)
    rng.shuffle(topics)
    offsets = [rng.randrange(len(topics)) for _ in specs]
    for i in range(count - n_snippets):  # spec i % S with topic (round + offset): all distinct
        s = i % len(specs)
        t = (i // len(specs) + offsets[s]) % len(topics)
        spec, topic = specs[s], topics[t]
        variant = rng.randrange(1 << 16)
        source = f"spec:{spec.name.split('(')[0]}" + (f"@{TOPICS.index(topic)}" if topic else "")
        out.append((render(kind, lang, spec, topic, variant), source))
    return out


def load_snippets(path: str | Path, seed: int = 0, max_lines: int = 25) -> dict[str, list[str]]:
    """Code snippets per language from a folder of source files or a JSONL file.

    A JSONL row holds `code` (or `content`) and `language` (any fence tag: py, js, c++, rs, ...).
    A folder is searched recursively by file extension. Each snippet is cut to a seeded window of
    at most `max_lines` lines, as OSS-Instruct shows a short excerpt rather than a whole file.
    """
    from distill.data.instructions.languages import alias_map

    path, aliases = Path(path), alias_map()
    rows: list[tuple[str, str]] = []
    if path.is_dir():
        by_ext = {lang.extension: key for key, lang in LANGUAGE_TABLE.items()}
        by_ext.update({".cc": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".mjs": "javascript"})
        for file in sorted(path.rglob("*")):
            if file.suffix in by_ext and file.is_file():
                rows.append(
                    (by_ext[file.suffix], file.read_text(encoding="utf-8", errors="ignore"))
                )
    elif path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                lang = aliases.get(str(row.get("language", "")).lower())
                if lang:
                    rows.append((lang, row.get("code") or row.get("content") or ""))
    else:
        raise ValueError(f"data.seed_snippets={path} does not exist: give a folder or a JSONL file")
    out: dict[str, list[str]] = {}
    for i, (lang, code) in enumerate(rows):
        lines = code.strip("\n").splitlines()
        start = random.Random(f"{seed}/{i}").randrange(max(1, len(lines) - max_lines + 1))
        window = "\n".join(lines[start : start + max_lines]).strip("\n")
        if sum(bool(ln.strip()) for ln in window.splitlines()) >= 3:  # too little to inspire
            out.setdefault(lang, []).append(window)
    return out


def instructions_from_config(data: Any, seed: int) -> list[Instruction]:
    """`sample_instructions` with every option of the `data` config group (DataConfig); `seed` is
    the run's, unless `data.instruction_seed` fixes which instructions are drawn."""
    fixed = getattr(data, "instruction_seed", None)
    seed = seed if fixed is None else fixed
    path = getattr(data, "seed_snippets", None)
    snippets = load_snippets(path, seed) if path else None
    return sample_instructions(
        data.num_examples,
        data.languages,
        data.task_kinds,
        data.difficulties,
        seed,
        snippets=snippets,
        seed_fraction=getattr(data, "seed_fraction", 0.5),
        max_tokens_scale=getattr(data, "max_tokens_scale", 1.0),
    )
