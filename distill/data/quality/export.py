"""Export the filtered dataset as a Hugging Face `datasets` folder with a dataset card.

`export_dataset` filters (checks, dedup, decontamination), splits by the stable id hash that the
training DataModule uses (`is_validation`), saves a `DatasetDict` with `train` and `validation`
(`datasets.load_from_disk` reads it back), and writes README.md (counts per language, kind and
difficulty; tokens; cost; drops by reason) and drops.json (the dropped ids per reason).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from distill.data.quality.checks import DROP_REASONS, filter_dataset
from distill.data.quality.decontam import skipped_benchmarks
from distill.data.store import is_validation

log = logging.getLogger(__name__)
DICT_COLUMNS = ("usage", "checks")
USAGE_KEYS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def export_dataset(records: list[dict[str, Any]], out_dir: str | Path, data: Any) -> dict[str, Any]:
    """Filter, split and save `records`; returns `export/...` metrics.

    When every record is dropped, only the card and drops.json are written (with a warning), so a
    small run with a weak teacher still finishes and says why nothing was kept.

    Args:
        records: dataset records as the store holds them.
        out_dir: the folder to create (replaced when it exists).
        data: the `data` config (its `quality` group and `val_fraction`).
    """
    kept, drops, dropped_ids = filter_dataset(records, data)
    rows = normalise_rows(kept)
    split = {
        "train": [r for r in rows if not is_validation(r["id"], data.val_fraction)],
        "validation": [r for r in rows if is_validation(r["id"], data.val_fraction)],
    }
    out = Path(out_dir)
    if rows:
        save_splits(split, out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        log.warning(
            "export: all %d records were dropped (%s): no dataset written to %s; check the "
            "teacher's answers or relax data.quality (e.g. data.quality.drop_failed_tests=false)",
            len(records),
            drops,
            out,
        )
    stats = dataset_stats(records, split, drops)
    (out / "README.md").write_text(dataset_card(stats, data), encoding="utf-8")
    (out / "drops.json").write_text(json.dumps(dropped_ids, indent=1), encoding="utf-8")
    log.info("export: %d train, %d validation -> %s", *map(len, split.values()), out)
    metrics = {f"export/{name}": len(part) for name, part in split.items()}
    metrics.update({f"export/dropped/{reason}": n for reason, n in drops.items()})
    return metrics


def save_splits(split: dict[str, list[dict[str, Any]]], out: Path) -> None:
    """A `DatasetDict` of the splits, one schema for both, inferred from all rows (a column that
    is null in every train row may hold strings in validation); an empty split is left out
    (`datasets` writes it with no shard and then cannot load the folder back)."""
    from datasets import Dataset, DatasetDict

    features = Dataset.from_list(split["train"] + split["validation"]).features
    dd = DatasetDict(
        {name: Dataset.from_list(part, features=features) for name, part in split.items() if part}
    )
    dd.save_to_disk(str(out))


def normalise_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Give every row the same columns and dict keys, so Arrow infers one schema."""
    columns = sorted({k for r in records for k in r})
    keys = {c: sorted({k for r in records for k in (r.get(c) or {})}) for c in DICT_COLUMNS}
    rows = []
    for record in records:
        row = {c: record.get(c) for c in columns}
        for c in DICT_COLUMNS:
            if c in row:
                row[c] = {k: (row[c] or {}).get(k) for k in keys[c]}
        rows.append(row)
    return rows


def dataset_stats(
    records: list[dict[str, Any]], split: dict[str, list[dict[str, Any]]], drops: dict[str, int]
) -> dict[str, Any]:
    """Counts, tokens and cost for the card: `records` are all answers, `split` the kept ones."""
    kept = [r for part in split.values() for r in part]
    tokens = Counter()
    for r in records:
        for k in USAGE_KEYS:
            tokens[k] += int((r.get("usage") or {}).get(k) or 0)
    checks = [r.get("checks") or {} for r in records]
    return {
        "answered": len(records),
        "kept": len(kept),
        "splits": {name: len(part) for name, part in split.items()},
        "by": {
            axis: dict(sorted(Counter(r.get(axis) or "?" for r in kept).items()))
            for axis in ("language", "task_kind", "difficulty")
        },
        "teachers": sorted({str(r.get("teacher")) for r in records}),
        "tokens": dict(tokens),
        "cost_usd": sum(float(r.get("cost_usd") or 0.0) for r in records),
        "cost_kept_usd": sum(float(r.get("cost_usd") or 0.0) for r in kept),
        "checks": {
            "syntax ok": sum(c.get("syntax") is True for c in checks),
            "compiled ok": sum(c.get("compiles") is True for c in checks),
            "compile not run (toolchain missing)": sum(
                str(c.get("compile_detail", "")).startswith("toolchain missing") for c in checks
            ),
            "tests run": sum(int(c.get("tests_run") or 0) for c in checks),
            "tests passed": sum(int(c.get("tests_passed") or 0) for c in checks),
        },
        "drops": {r: drops[r] for r in DROP_REASONS if r in drops},
    }


def _table(title: str, counts: dict[str, Any]) -> str:
    rows = "".join(f"| {k} | {v} |\n" for k, v in counts.items()) or "| (none) | 0 |\n"
    return f"| {title} | count |\n|---|---|\n{rows}"


def dataset_card(stats: dict[str, Any], data: Any) -> str:
    """README.md of the exported folder, with a YAML header the Hub reads."""
    q = getattr(data, "quality", data)
    by, tok = stats["by"], stats["tokens"]
    tags = "".join(f"- {t}\n" for t in ["code", "synthetic", "distillation", *by["language"]])
    sections = [
        "---\nlicense: other\nlanguage:\n- en\ntask_categories:\n- text-generation\n"
        f"size_categories:\n- {_size_category(stats['kept'])}\ntags:\n{tags}---\n",
        f"# {getattr(data, 'name', 'code_instruct')}\n",
        f"Teacher answers to code instructions, written by `distill generate` (teacher: "
        f"{', '.join(stats['teachers'])}). {stats['kept']} of {stats['answered']} answers kept "
        "after quality control.\n",
        "## Splits\n\n" + _table("split", stats["splits"]),
        "## Composition\n\n" + _table("language", by["language"]),
        _table("task kind", by["task_kind"]),
        _table("difficulty", by["difficulty"]),
        "## Tokens and cost\n\n" + _table("tokens (all answers)", tok),
        f"Cost: ${stats['cost_usd']:.4f} for all answers, ${stats['cost_kept_usd']:.4f} for the "
        "kept ones.\n",
        "## Quality control\n\n" + _table("check (all answers)", stats["checks"]),
        _table("dropped: reason", stats["drops"]),
        f"Near-duplicates: token {q.shingle_size}-shingle Jaccard >= {q.near_dup_threshold} "
        f"(MinHash-LSH, {q.minhash_perms} permutations). {_decontam_note(q)}\n",
        "## Terms\n\nAnswers from Claude are subject to Anthropic's usage policies and commercial "
        "terms, which restrict using outputs to train competing models; the user of this dataset "
        "is responsible for following them.\n",
    ]
    return "\n".join(sections)


def _size_category(n: int) -> str:
    """The Hub's size bucket: n<1K, 1K<n<10K, 10K<n<100K, ..."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")]
    bounds.append((1_000_000, "100K<n<1M"))
    return next((name for limit, name in bounds if n < limit), "n>1M")


def _decontam_note(q: Any) -> str:
    if not q.decontaminate or not q.benchmarks:
        return "Decontamination: off."
    skipped = skipped_benchmarks(q)
    used = [b for b in q.benchmarks if b not in skipped]
    note = (
        f"Decontamination: {q.decontam_ngram}-gram overlap >= {q.decontam_threshold} with the "
        f"prompts, solutions and tests of {', '.join(used) or 'no benchmark'}."
    )
    for bench in skipped:
        name = {"mbpp": "MBPP", "multipl_e": "MultiPL-E"}[bench]
        note += f" {name} was skipped: no data.quality.{bench}_path."
    return note


def export_run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """The end of `distill generate` when `data.export` is on: the run's dataset -> data/hf/."""
    from distill.data.store import read_records
    from distill.runs import dataset_path

    path = dataset_path(cfg, run_dir)
    if not cfg.data.export or not path.exists():
        return {}
    return export_dataset(list(read_records(path)), Path(run_dir) / "data" / "hf", cfg.data)
