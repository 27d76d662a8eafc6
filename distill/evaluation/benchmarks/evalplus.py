"""EvalPlus's test semantics (Liu et al. 2023, arXiv 2305.01210), shared by HumanEval+ and MBPP+.

A problem carries ``base_input`` (the original benchmark's inputs) and ``plus_input`` (EvalPlus's
added ones). As in ``evalplus`` 0.3.1:

* the expected outputs are the canonical solution's on every input, computed on the trusted side
  (here: once, in the sandbox, and cached under ``$DISTILL_CACHE/evalplus``), with its run time;
* each input gets ``max(1 s, 4 x the canonical solution's time)``, each of the two test sets at
  most ``min(60 s, the sum of its limits) + 2 s``; the first input that raises or overruns ends
  the run;
* an output passes when it equals the expected one, or, where the task has a tolerance (or the
  expected value is a float or a list of floats, then ``atol = 1e-6`` from there on), when it has
  the same type and length and ``numpy.allclose(out, exp, rtol=1e-7, atol=atol)``; a few tasks
  have their own oracles (the benchmark files);
* *base* passes when every base input does; *plus* when base and every plus input do; each set
  runs in its own process, the plus inputs only where the base inputs passed.

What differs, on purpose: the sample runs in distill's sandbox, and only plain builtin values come
back out of it (:mod:`~distill.evaluation.sandbox_codec`), so outputs are compared here, where
the sample cannot reach the expected values; an output that is not plain data (a numpy array, an
object with its own ``__eq__``) fails, where EvalPlus would call its ``__eq__``.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import json
import logging
import marshal
import os
import pickle
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distill.evaluation.benchmarks.base import Benchmark
from distill.evaluation.benchmarks.evalplus_tests import (
    MIN_TIME_LIMIT_S,
    TIME_LIMIT_FACTOR,
    EvalPlusTests,
    Oracle,
)
from distill.evaluation.problem import Problem
from distill.evaluation.sandbox_codec import Digest, decode_value
from distill.models.cache import cache_root

logger = logging.getLogger(__name__)

GROUND_TRUTH_TIMEOUT_S = 300.0
GROUND_TRUTH_VERSION = "3"  # bump when the way expected outputs are computed or digested changes
# Outputs with more items than this come back from the sandbox as a digest (compared exactly):
# a few tasks return hundreds of megabytes (HumanEval/130, Mbpp/255).
SEND_MAX_ITEMS = 20_000
PARTS = ("base", "plus")


def read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    """Every record of a ``.jsonl`` or ``.jsonl.gz`` file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


class EvalPlusBenchmark(Benchmark):
    """A benchmark in EvalPlus's format (one ``.jsonl.gz`` in ``eval.data_path``).

    Subclasses set ``file``, ``dataset`` and the prompt side; they may override
    :meth:`deserialize` (inputs JSON cannot hold) and :meth:`oracle` (tasks with their own
    comparison) and :meth:`not_none` (tasks whose outputs are only checked to be not None).
    """

    env_var = "DISTILL_EVALPLUS_PATH"
    data_hint = (
        "the folder holding EvalPlus's HumanEvalPlus-v0.1.10.jsonl.gz and "
        "MbppPlus-v0.2.0.jsonl.gz (../shared/data/evalplus)"
    )
    file: str = ""
    parts = PARTS

    def __init__(self) -> None:
        self._truth: dict[str, dict[str, Any]] = {}
        self._pickles: dict[str, str] = {}

    def data_files(self, data_path: Path) -> list[str]:
        return [self.file]

    def load_all(self, data_path: Path | None) -> list[Problem]:
        assert data_path is not None  # check_data refused None
        file = data_path / self.file
        digest = hashlib.md5(file.read_bytes()).hexdigest()  # noqa: S324 - EvalPlus's own hash
        records = read_jsonl_gz(file)
        records.sort(key=lambda r: int(r["task_id"].split("/")[1]))
        return [self.problem(r, digest) for r in records]

    def problem(self, record: dict[str, Any], digest: str) -> Problem:
        """One record as a :class:`Problem`; its inputs and tolerance go to ``extra``."""
        task_id = record["task_id"]
        base = [tuple(i) for i in self.deserialize(task_id, record["base_input"])]
        plus = [tuple(i) for i in self.deserialize(task_id, record["plus_input"])]
        return Problem(
            task_id=task_id,
            prompt=record["prompt"],
            test=record.get("test", record.get("assertion", "")),
            entry_point=record["entry_point"],
            canonical_solution=record["canonical_solution"],
            benchmark=self.name,
            extra={
                "inputs": tuple(base + plus),
                "num_base": len(base),
                "atol": float(record.get("atol") or 0.0),
                "digest": digest,
            },
        )

    def deserialize(self, task_id: str, inputs: list[Any]) -> list[Any]:
        """Inputs as the canonical solution takes them (JSON has no tuple, set or complex)."""
        return inputs

    def oracle(self, problem: Problem) -> Oracle | None:
        """The task's own comparison, if it has one."""
        return None

    def oracle_decides(self, problem: Problem) -> bool:
        """Whether the task's oracle alone decides (no tolerance check after it)."""
        return False

    def not_none(self, problem: Problem) -> bool:
        """Whether only ``output is not None`` is compared (outputs that are not plain data)."""
        return False

    def reference(self, problem: Problem) -> str:
        """The canonical program the expected outputs come from."""
        return problem.prompt + problem.canonical_solution

    def source(self, problem: Problem, sample: str) -> str:
        """The program a sample is: EvalPlus's ``solution`` (or ``prompt + completion``)."""
        return sample if self.sample_key == "solution" else problem.prompt + sample

    def program(self, problem: Problem, sample: str) -> str:
        """The program a sample is (its tests are calls: see :meth:`job`)."""
        return self.source(problem, sample)

    def strict_source(self, problem: Problem, sample: str) -> str:
        return self.source(problem, sample) + "\n"

    def job(
        self, problem: Problem, sample: str, mode: str, timeout_s: float
    ) -> tuple[dict[str, Any] | None, Any]:
        """Compatible mode: the function called on every input, under EvalPlus's limits (not
        ``eval.timeout_s``), its outputs judged here by :class:`EvalPlusTests`. Strict mode has
        nothing to add: the comparison already happens out of the sample's reach."""
        if mode != "compatible":
            return None, None
        tests = self.tests(problem)
        source = self.strict_source(problem, sample)
        plus = (
            self._part_job(problem, source, tests, 1)
            if tests.num_base < len(tests.inputs)
            else None
        )
        return self._part_job(problem, source, tests, 0), dataclasses.replace(tests, plus_job=plus)

    def _part_job(self, problem: Problem, source: str, tests: EvalPlusTests, part: int) -> dict:
        """The job calling the function on one test set's inputs (0: base, 1: plus). The plus
        inputs run in a job of their own, only where the base inputs passed (see
        :attr:`EvalPlusTests.plus_job`), as EvalPlus runs each set in its own process."""
        lo, hi = (0, tests.num_base) if part == 0 else (tests.num_base, len(tests.inputs))
        budget = tests.budgets()[part]
        return {
            "kind": "calls",
            "source": source,
            "entry": problem.entry_point,
            "args_pickle": self._pickled_inputs(problem, part),
            "call_limits": list(tests.limits[lo:hi]),
            "part_budgets": [budget],
            "not_none": self.not_none(problem),
            "max_items": SEND_MAX_ITEMS,
            # The calls' budget, and time to digest large outputs (4x the reference's).
            "timeout": budget + TIME_LIMIT_FACTOR * tests.send_time + 1.0,
            # What the reference took: the slowest jobs start first.
            "expected_seconds": sum(self._truth[problem.task_id]["times"][lo:hi]),
        }

    def tests(self, problem: Problem) -> EvalPlusTests:
        """``problem``'s inputs, expected outputs and limits (ground truth computed if needed)."""
        if problem.task_id not in self._truth:
            self.prepare([problem])
        truth = self._truth[problem.task_id]
        return EvalPlusTests(
            task_id=problem.task_id,
            inputs=problem.extra["inputs"],
            num_base=problem.extra["num_base"],
            expected=truth["expected"],
            limits=tuple(max(MIN_TIME_LIMIT_S, TIME_LIMIT_FACTOR * t) for t in truth["times"]),
            atol=problem.extra["atol"],
            oracle=self.oracle(problem),
            oracle_decides=self.oracle_decides(problem),
            send_time=truth["send_time"],
            source=f"{problem.extra['digest']}-v{GROUND_TRUTH_VERSION}",
        )

    def _pickled_inputs(self, problem: Problem, part: int | None = None) -> str:
        """The inputs (all, or one test set's), pickled once: trusted data for the sandbox to
        unpickle (much faster than the plain-value codec, which is for what comes back out)."""
        key = (problem.task_id, part)
        if key not in self._pickles:
            inputs, num_base = problem.extra["inputs"], problem.extra["num_base"]
            chosen = {None: inputs, 0: inputs[:num_base], 1: inputs[num_base:]}[part]
            data = pickle.dumps([list(i) for i in chosen], protocol=5)
            self._pickles[key] = base64.b64encode(data).decode()
        return self._pickles[key]

    def hidden_paths(self, data_path: str | None) -> list[str]:
        return [*super().hidden_paths(data_path), str(ground_truth_dir().resolve())]

    def prepare(self, problems: Sequence[Problem]) -> None:
        """Load or compute the expected outputs of ``problems`` (cached on disk by the data
        file's md5), before any sample runs."""
        todo = [p for p in problems if p.task_id not in self._truth]
        by_digest: dict[str, list[Problem]] = {}
        for p in todo:
            by_digest.setdefault(p.extra["digest"], []).append(p)
        for digest, group in by_digest.items():
            path = ground_truth_dir() / f"{self.name}-{digest}-v{GROUND_TRUTH_VERSION}.{_MARSHAL}"
            stored = _read_truth(path)
            missing = [p for p in group if p.task_id not in stored]
            if missing:
                stored.update(self._compute(missing))
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(marshal.dumps(stored))
                tmp.replace(path)
            for p in group:
                row = stored[p.task_id]
                self._truth[p.task_id] = {
                    "expected": tuple(
                        Digest(v) if status == "digest" else v for status, v in row["expected"]
                    ),
                    "times": tuple(row["times"]),
                    "send_time": sum(row["send_times"]),
                }

    def _compute(self, problems: Sequence[Problem]) -> dict[str, Any]:
        """Run the canonical solutions on every input in the sandbox; raise if one fails."""
        from distill.evaluation.sandbox import Limits, Sandbox

        logger.info("%s: computing the expected outputs of %d problems", self.name, len(problems))
        jobs = [
            {
                "kind": "calls",
                "source": self.reference(p),
                "entry": p.entry_point,
                "args_pickle": self._pickled_inputs(p),
                "not_none": self.not_none(p),
                "max_items": SEND_MAX_ITEMS,
                "record_time": True,
                "timeout": GROUND_TRUTH_TIMEOUT_S,
            }
            for p in problems
        ]
        limits = Limits(memory_bytes=4 * 1024**3, file_size_bytes=256 * 1024**2)
        with Sandbox(min(len(jobs), os.cpu_count() or 1), limits) as sandbox:
            replies = sandbox.run(jobs, progress=True)
        truth = {}
        for p, reply in zip(problems, replies, strict=True):
            record = json.loads(reply.get("record") or "null") if "error" not in reply else None
            results = record.get("results") if isinstance(record, dict) else None
            failed = [(i, r) for i, r in enumerate(results or []) if r[0] not in ("ok", "digest")]
            if not results or failed:
                why = reply.get("error") or (failed[:1] or str(record)[:200])
                raise RuntimeError(
                    f"{self.name}: the canonical solution of {p.task_id} did not run on all its "
                    f"inputs ({str(why)[:300]}); the data may be damaged"
                )
            truth[p.task_id] = {
                # ("ok", value), or ("digest", sha256) for one too large to send
                "expected": [(s, v if s == "digest" else decode_value(v)) for s, v in results],
                "times": record["times"],
                "send_times": record["send_times"],
            }
        return truth


# The expected outputs are plain builtin values, which marshal stores and loads many times faster
# than JSON plus the codec; its format follows the Python version (hence in the file name).
_MARSHAL = f"py{sys.version_info[0]}{sys.version_info[1]}.marshal"


def _read_truth(path: Path) -> dict[str, Any]:
    """The stored expected outputs, or nothing (then computed again) if the file is unreadable."""
    if not path.is_file():
        return {}
    try:
        stored = marshal.loads(path.read_bytes())
    except (EOFError, ValueError, TypeError) as e:
        logger.warning("%s is unreadable (%s): computing the expected outputs again", path, e)
        return {}
    return stored if isinstance(stored, dict) else {}


def ground_truth_dir() -> Path:
    """Where expected outputs are cached (hidden from the programs that run)."""
    return cache_root() / "evalplus"
