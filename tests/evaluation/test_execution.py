import os
import time
from pathlib import Path

import pytest

from distill.evaluation.benchmarks import Problem, load_humaneval
from distill.evaluation.execution import build_program, run_program, run_programs

TOY = Problem(
    task_id="toy/0",
    prompt='def add(a, b):\n    """Return a + b."""\n',
    test="def check(candidate):\n    assert candidate(1, 2) == 3\n",
    entry_point="add",
    canonical_solution="    return a + b\n",
)


def _run(completion: str, timeout_s: float = 5.0):
    return run_program(build_program(TOY, completion), timeout_s)


def test_program_matches_human_eval_layout() -> None:
    program = build_program(TOY, TOY.canonical_solution)
    assert program == TOY.prompt + TOY.canonical_solution + "\n" + TOY.test + "\ncheck(add)\n"


def test_canonical_solutions_pass() -> None:
    problems = load_humaneval(10)
    programs = [build_program(p, p.canonical_solution) for p in problems]
    results = run_programs(programs, timeout_s=10.0, workers=4)
    assert [r.result for r in results] == ["passed"] * 10
    assert all(r.passed for r in results)


def test_wrong_answer_fails_with_assertion_error() -> None:
    result = _run("    return a - b\n")
    assert not result.passed
    assert result.result == "failed: AssertionError"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("    raise ValueError('bad')\n", "failed: ValueError"),
        ("    return undefined_name\n", "failed: NameError"),
        ("    return (\n", "failed: SyntaxError"),
        ("    import sys; sys.exit(3)\n", "failed: exit code 3"),
        ("    import os; os._exit(4)\n", "failed: exit code 4"),
        ("    x = bytearray(4 * 1024**3)\n", "failed: MemoryError"),
    ],
)
def test_failures_are_named(body: str, expected: str) -> None:
    result = _run(body)
    assert (result.passed, result.result) == (False, expected)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def test_infinite_loop_times_out_and_leaves_no_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    body = (
        "    import os, subprocess, sys\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        f"    open({str(pid_file)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "    while True:\n"
        "        pass\n"
    )
    start = time.monotonic()
    result = _run(body, timeout_s=1.5)
    elapsed = time.monotonic() - start
    assert (result.passed, result.result) == (False, "timed out")
    assert elapsed < 4.0
    pids = [int(p) for p in pid_file.read_text().split()]
    deadline = time.monotonic() + 2.0  # an orphaned grandchild may take a moment to be reaped
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


def test_child_runs_in_isolated_temp_dir() -> None:
    body = (
        f"    import os\n    assert os.getcwd() != {os.getcwd()!r}\n"
        "    assert 'distill-exec-' in os.getcwd()\n    return a + b\n"
    )
    assert _run(body).result == "passed"
