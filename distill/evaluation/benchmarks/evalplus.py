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
* *base* passes when every base input does; *plus* when base and every plus input do.

What differs, on purpose: the sample runs in distill's sandbox, and only plain builtin values come
back out of it (:mod:`~distill.evaluation.sandbox_codec`), so outputs are compared here, where
the sample cannot reach the expected values; an output that is not plain data (a numpy array, an
object with its own ``__eq__``) fails, where EvalPlus would call its ``__eq__``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import math
import os
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from distill.evaluation.benchmarks.base import Benchmark
from distill.evaluation.problem import Problem
from distill.evaluation.sandbox_codec import Digest, decode_value
from distill.models.cache import cache_root

logger = logging.getLogger(__name__)

MIN_TIME_LIMIT_S = 1.0  # evalplus.config.DEFAULT_MIN_TIME_LIMIT
TIME_LIMIT_FACTOR = 4.0  # evalplus.config.DEFAULT_GT_TIME_LIMIT_FACTOR
TASK_TIMEOUT_S = 60.0  # EVALPLUS_TIMEOUT_PER_TASK's default
PART_GRACE_S = 2.0  # evalplus waits `timeout + 1` for a process whose timeout has `+ 1`
GROUND_TRUTH_TIMEOUT_S = 300.0
GROUND_TRUTH_VERSION = "2"
# Outputs with more items than this come back from the sandbox as a digest (compared exactly):
# a few tasks return hundreds of megabytes (HumanEval/130, Mbpp/255).
SEND_MAX_ITEMS = 20_000  # bump when the way expected outputs are computed changes
PARTS = ("base", "plus")

# A task's own oracle: (output, expected, input, atol, output == expected) -> whether the output
# counts as an exact match; the tolerance check still follows, as in EvalPlus.
Oracle = Callable[[Any, Any, Sequence[Any], float, bool], bool]


def read_jsonl_gz(path: Path) -> list[dict[str, Any]]:
    """Every record of a ``.jsonl`` or ``.jsonl.gz`` file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def is_floats(value: Any) -> bool:
    """A float, or a non-empty list or tuple of floats (EvalPlus's test for a default atol)."""
    if isinstance(value, float):
        return True
    return (
        isinstance(value, list | tuple) and bool(value) and all(isinstance(v, float) for v in value)
    )


def output_passes(out: Any, exp: Any, atol: float, exact: bool) -> tuple[bool, float]:
    """EvalPlus's comparison of one output; returns the verdict and the atol from here on."""
    if atol == 0 and is_floats(exp):
        atol = 1e-6  # kept for the later inputs of the same test set, as EvalPlus does
    if exact or atol == 0:
        return exact, atol
    try:
        if type(out) is not type(exp):
            return False, atol
        if isinstance(exp, list | tuple) and len(out) != len(exp):
            return False, atol
        return bool(np.allclose(out, exp, rtol=1e-07, atol=atol)), atol
    except Exception:  # noqa: BLE001 - what EvalPlus's assert would raise on is a failure
        return False, atol


@dataclass(frozen=True, repr=False)
class EvalPlusTests:
    """One problem's inputs and expected outputs, judged on the trusted side.

    Attributes:
        task_id: The problem's id (for messages).
        inputs: Base inputs, then plus inputs, each a tuple of arguments.
        num_base: How many of ``inputs`` are base inputs.
        expected: The canonical solution's output on each input.
        limits: Seconds allowed for each input.
        atol: The task's tolerance (0: exact, unless the expected value is a float).
        oracle: The task's own comparison, if it has one.
        oracle_decides: The oracle's answer is the verdict (no tolerance check follows).
        send_time: Seconds the reference's outputs took to encode or digest in the sandbox.
        source: The data file's md5 and the ground truth's version (the expected outputs').
    """

    task_id: str
    inputs: tuple[tuple[Any, ...], ...]
    num_base: int
    expected: tuple[Any, ...]
    limits: tuple[float, ...]
    atol: float
    oracle: Oracle | None = None
    oracle_decides: bool = False
    send_time: float = 0.0
    source: str = ""

    def __repr__(self) -> str:  # short: it keys the result cache, beside the job itself
        return f"EvalPlusTests({self.task_id}, {self.source})"

    def budgets(self) -> list[float]:
        """Each test set's whole budget: ``min(60 s, sum of its limits) + 2 s``."""
        sets = (self.limits[: self.num_base], self.limits[self.num_base :])
        return [min(TASK_TIMEOUT_S, sum(s)) + PART_GRACE_S for s in sets]

    def judge(self, outcomes: Sequence[tuple[str, Any]]) -> tuple[str, str, dict[str, bool]]:
        """The verdict on the calls' outcomes (``("ok", value)``, or a failure ``(reason,
        detail)``), in input order, possibly cut short after the first failure.

        Returns:
            ``(reason, detail, parts)``: ``passed`` when base and plus pass; ``parts`` says
            which of ``base`` and ``plus`` passed.
        """
        parts, first_failure = {}, None
        for name, lo, hi in (("base", 0, self.num_base), ("plus", self.num_base, len(self.inputs))):
            atol, passed = self.atol, True
            for i in range(lo, hi):
                failure = self._failure(outcomes, i, atol)
                if isinstance(failure, float):
                    atol = failure
                    continue
                passed, first_failure = False, first_failure or failure
                break
            parts[name] = passed
        parts["plus"] = parts["base"] and parts["plus"]
        if parts["plus"]:
            return "passed", "", parts
        return (*first_failure, parts)

    def _failure(
        self, outcomes: Sequence[tuple[str, Any]], i: int, atol: float
    ) -> float | tuple[str, str]:
        """The atol to go on with if input ``i`` passes, else the ``(reason, detail)``."""
        if i >= len(outcomes):
            return "timeout", f"input {i}: not reached (an earlier input failed or overran)"
        status, value = outcomes[i]
        if status != "ok":
            return value
        exp = self.expected[i]
        if isinstance(value, Digest) or isinstance(exp, Digest):  # too large to send: exact only
            same = Digest.of(value) == Digest.of(exp)
            return atol if same else ("assertion", f"input {i}: a large output differs")
        try:
            exact = bool(value == exp)
            if self.oracle is not None:
                exact = bool(self.oracle(value, exp, self.inputs[i], atol, exact))
        except Exception:  # noqa: BLE001 - a comparison that raises is a failure, as in EvalPlus
            return "assertion", f"input {i}: the output cannot be compared"
        ok = exact
        if not self.oracle_decides:
            ok, atol = output_passes(value, exp, atol, exact)
        if ok:
            return atol
        return "assertion", f"input {i}: expected {_short(exp)}, got {_short(value)}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
        job = {
            "kind": "calls",
            "source": self.strict_source(problem, sample),
            "entry": problem.entry_point,
            "args_pickle": self._pickled_inputs(problem),
            "call_limits": list(tests.limits),
            "part_sizes": [tests.num_base, len(tests.inputs) - tests.num_base],
            "part_budgets": tests.budgets(),
            "not_none": self.not_none(problem),
            "max_items": SEND_MAX_ITEMS,
            # The calls' budgets, and time to digest large outputs (4x the reference's).
            "timeout": sum(tests.budgets()) + TIME_LIMIT_FACTOR * tests.send_time + 1.0,
        }
        return job, tests

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

    def _pickled_inputs(self, problem: Problem) -> str:
        """The inputs, pickled once per problem: trusted data for the sandbox to unpickle (much
        faster than the plain-value codec, which is for what comes back out)."""
        if problem.task_id not in self._pickles:
            data = pickle.dumps([list(i) for i in problem.extra["inputs"]], protocol=5)
            self._pickles[problem.task_id] = base64.b64encode(data).decode()
        return self._pickles[problem.task_id]

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
            path = ground_truth_dir() / f"{self.name}-{digest}-v{GROUND_TRUTH_VERSION}.json"
            stored = json.loads(path.read_text()) if path.is_file() else {}
            missing = [p for p in group if p.task_id not in stored]
            if missing:
                stored.update(self._compute(missing))
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(stored))
                tmp.replace(path)
            for p in group:
                row = stored[p.task_id]
                self._truth[p.task_id] = {
                    "expected": tuple(
                        Digest(v) if status == "digest" else decode_value(v)
                        for status, v in row["expected"]
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
                # ["ok", encoded value], or ["digest", sha256] for one too large to send
                "expected": results,
                "times": record["times"],
                "send_times": record["send_times"],
            }
        return truth


def ground_truth_dir() -> Path:
    """Where expected outputs are cached (hidden from the programs that run)."""
    return cache_root() / "evalplus"


def poly(xs: Sequence[float], x: float) -> float:
    """HumanEval/32's polynomial, as its prompt defines it."""
    return sum(coeff * math.pow(x, i) for i, coeff in enumerate(xs))
