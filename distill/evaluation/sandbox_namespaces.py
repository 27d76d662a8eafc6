"""Namespaces and mounts of a sandbox worker (standard library only; loaded by path).

As root: a new network namespace (its loopback is down, so nothing is reachable, not even this
machine) and a mount namespace in which /tmp, /var/tmp, /dev/shm and /run/lock are fresh tmpfs,
benchmark data folders are covered by an empty read-only tmpfs, and an interpreter installed under
a directory closed to other uids (``/root/.pyenv``) is bind-mounted into an otherwise empty tmpfs so
that the sandbox uid can import from it. Without root: the same inside an unprivileged user
namespace, where the kernel allows one. Otherwise nothing here, and the child installs an audit
hook instead.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any

CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET = 0x00020000, 0x10000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 4096, 16384, 1 << 18
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
LIBC = ctypes.CDLL(None, use_errno=True)


def libc_call(fn: Any, *args: Any) -> None:
    """Call a libc function; raise OSError with its errno if it fails."""
    if fn(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def isolate(
    mode: str, uid: int | None, tmpfs_bytes: int, hide: list[str]
) -> tuple[str, str, list[str]]:
    """Enter network and mount namespaces if allowed.

    Args:
        mode: ``"auto"``, ``"netns"`` (namespaces or fail) or ``"audit-hook"`` (none).
        uid: The uid programs will run under (None: ours).
        tmpfs_bytes: Size of each private tmpfs.
        hide: Folders to cover with an empty read-only tmpfs.

    Returns:
        (network label, filesystem label, the private tmpfs folders).
    """
    if mode == "audit-hook":
        return "audit-hook", "shared", []
    root = os.geteuid() == 0
    flags = CLONE_NEWNET | CLONE_NEWNS | (0 if root else CLONE_NEWUSER)
    own_uid, own_gid = os.getuid(), os.getgid()
    if LIBC.unshare(flags) != 0:
        if mode == "netns":
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
        return "audit-hook", "shared", []
    if not root:  # map ourselves to ourselves, so files keep their owners
        with open("/proc/self/setgroups", "w") as f:
            f.write("deny")
        for name, ident in (("uid_map", own_uid), ("gid_map", own_gid)):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(f"{ident} {ident} 1")
    filesystem, private = _private_mounts(uid, tmpfs_bytes, hide)
    return ("netns" if root else "userns+netns"), filesystem, private


def _private_mounts(uid: int | None, tmpfs_bytes: int, hide: list[str]) -> tuple[str, list[str]]:
    libc_call(LIBC.mount, None, b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None)
    keep = [sys.prefix, sys.base_prefix, os.path.dirname(os.path.abspath(__file__))]
    size = f"size={tmpfs_bytes},nr_inodes=65536,mode=1777".encode()
    flags = ctypes.c_ulong(MS_NOSUID | MS_NODEV)
    done = []
    for target in PRIVATE_DIRS:
        if os.path.isdir(target) and not any(_inside(k, target) for k in keep):
            libc_call(LIBC.mount, b"tmpfs", target.encode(), b"tmpfs", flags, size)
            done.append(target)
    exposed = _expose_python(uid) if uid is not None else 0
    hidden = 0
    for path in hide:
        if os.path.isdir(path) and not any(_inside(k, path) for k in keep):
            ro = ctypes.c_ulong(MS_RDONLY | MS_NOSUID | MS_NODEV)
            libc_call(LIBC.mount, b"tmpfs", path.encode(), b"tmpfs", ro, b"size=4k,mode=555")
            hidden += 1
    label = "private " + ",".join(done) if "/tmp" in done else "shared"
    return f"{label}; {hidden} data paths hidden; {exposed} interpreter paths exposed", done


def _expose_python(uid: int) -> int:
    """Let ``uid`` import from an interpreter installed under a closed directory.

    A Python under ``/root`` (pyenv, conda) is unreadable to an unprivileged uid. In our mount
    namespace, each closed ancestor is covered with an empty tmpfs (hiding the rest of, e.g.,
    root's home) and the interpreter's own directories are bind-mounted back into it.
    """
    todo = []
    for path in _interpreter_paths():
        closed = _closed_ancestor(path, uid)
        if closed and not any(_inside(path, done) for done, _, _ in todo):
            todo.append((path, closed, os.open(path, os.O_PATH)))  # opened before masking
    flags = ctypes.c_ulong(MS_NOSUID | MS_NODEV)
    for closed in sorted({closed for _, closed, _ in todo}, key=len):
        libc_call(LIBC.mount, b"tmpfs", closed.encode(), b"tmpfs", flags, b"mode=755")
    bind = ctypes.c_ulong(MS_BIND | MS_REC)
    for path, _, fd in todo:
        os.makedirs(path, exist_ok=True)  # inside the new tmpfs, not on disk
        libc_call(LIBC.mount, f"/proc/self/fd/{fd}".encode(), path.encode(), None, bind, None)
        os.close(fd)
    return len(todo)


def interpreter_closed(uid: int) -> bool:
    """Whether ``uid`` cannot reach some directory the interpreter imports from."""
    return any(_closed_ancestor(p, uid) for p in _interpreter_paths())


def _interpreter_paths() -> list[str]:
    """The directories Python imports from, shortest first."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths |= {p for p in sys.path if p and os.path.isdir(p)}
    paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    # Our own package: a checkout in a closed folder (mktemp -d makes 0700) must stay importable.
    paths.add(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    return sorted({os.path.realpath(p) for p in paths}, key=len)


def _closed_ancestor(path: str, uid: int) -> str | None:
    """The first directory on the way to ``path`` that ``uid`` (no groups) cannot enter."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/" + "/".join(parts[:i])
        st = os.stat(prefix)
        bit = 0o100 if st.st_uid == uid else 0o010 if st.st_gid == uid else 0o001
        if not st.st_mode & bit:
            return prefix
    return None


def _inside(path: str, mount_point: str) -> bool:
    path, mount_point = os.path.realpath(path), os.path.realpath(mount_point)
    return path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
