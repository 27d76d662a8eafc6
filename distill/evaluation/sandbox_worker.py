"""The sandbox worker: a pre-imported, trusted process that forks one confined child per program.

Started by :mod:`distill.evaluation.sandbox` as ``python -I sandbox_worker.py CONFIG`` with a
scrubbed environment (standard library only; it never imports ``distill``). Setup, once per worker:

* as root, take the unused uid the evaluator claimed (an ``flock`` per uid, so concurrent
  evaluators never share one); each program then runs under that uid, which makes
  ``RLIMIT_NPROC`` a per-program cap, keeps the program away from root's files and processes,
  and lets ``kill(-1)`` issued as that uid kill every process the program left, whatever
  session or group it moved to;
* a new network namespace (loopback down: no network at all) and a mount namespace with private
  tmpfs on /tmp, /var/tmp, /dev/shm and /run/lock and the benchmark data hidden; without root, the
  same through an unprivileged user namespace where the kernel allows it, else an audit hook;
* ``PR_SET_CHILD_SUBREAPER``, so every orphan of a program is re-parented here and reaped.

Then a loop: read a job (8-byte length + JSON on stdin), fork, wait with a wall-clock deadline, kill
what is left, reap, read the child's record from its memfd, delete the work directory, reply on
stdout.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import select
import shutil
import signal
import struct
import sys
import tempfile
import time
from typing import Any

PR_SET_CHILD_SUBREAPER = 36
PREIMPORT = (
    "array bisect collections copy datetime decimal fractions functools hashlib heapq itertools "
    "json math operator random re statistics string subprocess typing"
).split()
_HEADER = struct.Struct("!Q")
_EXITED_NOWAIT = os.WEXITED | os.WNOHANG | os.WNOWAIT


def _load(name: str) -> Any:
    """Import a sibling file by path (``-I`` keeps this directory off ``sys.path``)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_distill_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def send(fd: int, message: dict[str, Any]) -> None:
    """Write one length-prefixed JSON message."""
    data = json.dumps(message).encode()
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def recv(fd: int) -> dict[str, Any] | None:
    """Read one length-prefixed JSON message; None at end of file."""
    header = _read_exact(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_exact(fd, _HEADER.unpack(header)[0])
    return None if body is None else json.loads(body)


def _read_exact(fd: int, n: int) -> bytes | None:
    parts, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class Worker:
    """One worker's namespaces, uid and job loop (see the module docstring)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.uid: int | None = None
        self.base = ""
        self.child = _load("sandbox_child")
        self.ns = _load("sandbox_namespaces")
        self.setup_info: dict[str, Any] = {}
        self.nproc_base = 0
        self.private_dirs: list[str] = []
        self.runs = 0
        self.poller = select.poll()
        self.poller.register(0, select.POLLIN)  # end of file: the evaluator is gone

    def setup(self) -> dict[str, Any]:
        """Claim a uid, enter namespaces, become a subreaper; return the hello message."""
        cfg = self.config
        self.uid = cfg.get("uid")  # claimed (flock'd) by the evaluator, which holds the lock
        network, filesystem, self.private_dirs = self.ns.isolate(
            cfg["network"], self.uid, cfg["tmpfs_bytes"], cfg["hide"]
        )
        identity = "same user as the evaluator"
        private = filesystem.startswith("private")
        if self.uid is not None and not private and self.ns.interpreter_closed(self.uid):
            identity += " (no mount namespace, and the interpreter is closed to other uids)"
            self.uid = None
        elif self.uid is not None:
            identity = f"uid {self.uid}"
        if self.uid is None:  # RLIMIT_NPROC counts all the user's processes: allow for them
            self.nproc_base = _count_processes(os.getuid())
        self.ns.libc_call(self.ns.LIBC.prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self.base = tempfile.mkdtemp(prefix="distill-sandbox-", dir="/tmp" if private else None)
        os.chmod(self.base, 0o711)
        for name in PREIMPORT:
            __import__(name)
        env = dict(os.environ)  # the evaluator gave us a scrubbed one; programs get the same
        codec = _load("sandbox_codec")
        self.setup_info = {"uid": self.uid, "network": network, "env": env, "codec": codec}
        self.setup_info.update(prctl=self.ns.LIBC.prctl, stdio=self.child.stdio())
        gc.collect()
        gc.freeze()  # the collector never walks these objects again: fewer copy-on-write faults
        return {
            "pid": os.getpid(),
            "uid": self.uid,
            "network": network,
            "filesystem": filesystem,
            "identity": identity,
            "kill": "uid" if self.uid is not None else "process tree",
        }

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run one job in a fresh child; return its exit status and record."""
        start = time.monotonic()
        if "RLIMIT_NPROC" in job["limits"]:
            job["limits"]["RLIMIT_NPROC"] += self.nproc_base
        self.runs += 1
        workdir = os.path.join(self.base, str(self.runs))  # base is ours alone (mode 0711)
        os.mkdir(workdir, 0o700)
        if self.uid is not None:
            os.chown(workdir, self.uid, self.uid)
        # The record goes to a memfd, not a pipe: nothing wakes us before the child exits, and
        # a large record cannot block the child (RLIMIT_FSIZE bounds it).
        record = os.memfd_create("record", os.MFD_CLOEXEC)
        try:
            pid = os.fork()
            if pid == 0:
                try:
                    self.child.run_child(job, workdir, record, self.setup_info)
                finally:
                    os._exit(70)
            timed_out = True
            left = True
            try:
                timed_out = self._wait(pid, start + job["timeout"])
            finally:
                left = self._sweep(pid, force=timed_out)
            status = os.waitpid(pid, 0)[1]
            if left:
                self._reap_orphans()
            size = os.fstat(record).st_size
            data = os.pread(record, min(size, job["max_record"]), 0) if size else b""
        finally:
            os.close(record)
            try:
                os.rmdir(workdir)  # the usual case: the program wrote nothing
            except OSError:
                shutil.rmtree(workdir, ignore_errors=True)
            self._clear_private_dirs()
        return {
            "timed_out": timed_out,
            "code": os.waitstatus_to_exitcode(status),
            "record": data.decode("utf-8", "replace") if size else None,
            "truncated": size > job["max_record"],
            "seconds": time.monotonic() - start,
        }

    def _clear_private_dirs(self) -> None:
        """Empty our private /tmp (and co.): nothing a program left there reaches the next one."""
        for folder in self.private_dirs:
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if path == self.base:
                    continue
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)

    def _wait(self, pid: int, deadline: float) -> bool:
        """Wait for the child to exit (not reaping it) until ``deadline``; True if it timed out.

        A pidfd wakes us the moment it exits; kernels before 5.3 have none, so we poll.
        """
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = -1
        if pidfd >= 0:
            self.poller.register(pidfd, select.POLLIN)
        delay = 0.0005
        try:
            while True:
                if pidfd < 0 and os.waitid(os.P_PID, pid, _EXITED_NOWAIT) is not None:
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return True
                wait = remaining if pidfd >= 0 else min(delay, remaining)
                for fd, _ in self.poller.poll(wait * 1000):
                    if fd == pidfd:
                        return False
                    self._sweep(-1, force=True)  # stdin closed: the evaluator is gone
                    os._exit(0)
                delay = min(delay * 2, 0.02)
        finally:
            if pidfd >= 0:
                self.poller.unregister(pidfd)
                os.close(pidfd)

    def _sweep(self, pid: int, force: bool) -> bool:
        """Kill the child's group and, if anything else is left, every process it started.

        Returns:
            Whether there was anything besides the child to kill (and so to reap).
        """
        if pid > 0:
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if not force and _children(os.getpid()) == [pid]:
            return False  # a zombie child has no children: any leftover would be ours by now
        if self.uid is not None:
            self._kill_uid()
        else:
            self._kill_tree(pid)
        return True

    def _kill_uid(self) -> None:
        """``kill(-1, SIGKILL)`` as the sandbox uid: atomic against forks, blind to sessions."""
        killer = os.fork()
        if killer == 0:
            try:
                os.setresuid(self.uid, self.uid, self.uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(killer, 0)

    def _kill_tree(self, pid: int) -> None:
        """Without a uid of our own: SIGKILL every descendant until none is left."""
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            alive = [p for p in self._descendants() if p != pid and not _is_zombie(p)]
            if not alive:
                return
            for p in alive:
                try:
                    os.kill(p, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            self._reap_orphans(block=False)

    def _descendants(self) -> list[int]:
        """Every process below this worker (orphans come back here: we are a subreaper)."""
        found, todo = [], [os.getpid()]
        while todo:
            parent = todo.pop()
            kids = _children(parent)
            found.extend(kids)
            todo.extend(kids)
        return found

    def _reap_orphans(self, block: bool = True) -> None:
        """Reap re-parented children; wait (bounded) for the killed ones to die."""
        deadline = time.monotonic() + (5.0 if block else 0.0)
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                if time.monotonic() >= deadline:
                    return
                time.sleep(0.001)


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(p) for p in f.read().split())
    except (FileNotFoundError, ProcessLookupError):
        pass
    return kids


def _count_processes(uid: int) -> int:
    count = 0
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/status") as f:
                count += any(line.split()[1:2] == [str(uid)] for line in f if line[:4] == "Uid:")
        except (FileNotFoundError, ProcessLookupError, NotADirectoryError, PermissionError):
            continue
    return count


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def main() -> None:
    """Set up, say hello, then serve jobs until stdin closes."""
    if not sys.platform.startswith("linux"):
        send(1, {"error": "the sandbox needs Linux (namespaces, /proc, memfd); run in a container"})
        return
    worker = Worker(json.loads(sys.argv[1]))
    try:
        hello = worker.setup()
    except Exception as e:  # noqa: BLE001 - reported to the evaluator, which raises
        send(1, {"error": f"{type(e).__name__}: {e}"})
        return
    send(1, hello)
    try:
        while (job := recv(0)) is not None:
            try:
                reply = worker.run(job)
            except Exception as e:  # noqa: BLE001 - e.g. fork failed: this job fails, we go on
                reply = {"error": f"{type(e).__name__}: {e}"}
            send(1, reply)
    finally:
        shutil.rmtree(worker.base, ignore_errors=True)


if __name__ == "__main__":
    main()
