"""Compilers and runtimes for programs in other languages than Python, run inside the sandbox.

A :class:`Toolchain` says which file a program is written to, which commands build and run it
(each a step with its own time limit), and what the toolchain needs beyond a Python test: more
address space (the JVM reserves gigabytes up front), more processes and threads (compilers start
several), larger output files (a Rust binary carries its standard library). The program passes
when every step exits with status 0, as in MultiPL-E. Threads are capped per toolchain
(``GOMAXPROCS``, a serial JVM) so the process limit holds on a machine with many cores.

A toolchain that is missing here is reported as such (:func:`missing`), and its benchmark is
skipped rather than scored as failing. Only the sandbox's own ``PATH`` counts: programs run under
another uid with a scrubbed environment, so a compiler in the user's home (rustup's) is out of
reach; Debian's packages are what CI installs (``make toolchains``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any

SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"  # what sandbox.py gives every program
JAVATUPLES = "/usr/share/java/javatuples.jar"  # Debian's libjavatuples-java; MultiPL-E's prompts
_SERIAL_JVM = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")  # few threads, quick start-up


@dataclass(frozen=True)
class Toolchain:
    """How to build and run one language's program.

    Attributes:
        language: The language's name in messages.
        file_name: Where the program is written (Java's class and Go's ``_test.go`` need theirs).
        compile: The build command, or ``None`` for an interpreted language.
        run: The command that runs the tests; its exit status is the verdict.
        tools: Executables that must be on :data:`SANDBOX_PATH`.
        files: Other files that must exist (a library the programs import).
        package: The Debian packages that provide it, for the error message.
        env: Environment variables of both commands.
        memory_bytes: Address space per process (``RLIMIT_AS``).
        processes: Processes and threads of the program's uid (``RLIMIT_NPROC``).
        file_size_bytes: Largest file a step may write (the built binary among them).
        compile_timeout_s: Wall-clock limit of the build (a timed-out build fails).
    """

    language: str
    file_name: str
    compile: tuple[str, ...] | None
    run: tuple[str, ...]
    tools: tuple[str, ...]
    package: str
    files: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    memory_bytes: int = 2 * 1024**3
    processes: int = 128
    file_size_bytes: int = 64 * 1024**2
    compile_timeout_s: float = 30.0

    def job(self, source: str, timeout_s: float) -> dict[str, Any]:
        """The sandbox job that writes ``source``, builds it and runs it (``timeout_s``: the
        run's wall-clock limit; the build has :attr:`compile_timeout_s`)."""
        steps = []
        if self.compile:
            steps.append(
                {"stage": "compile", "argv": [*self.compile], "timeout": self.compile_timeout_s}
            )
        steps.append({"stage": "run", "argv": [*self.run], "timeout": timeout_s})
        return {
            "kind": "steps",
            "files": {self.file_name: source},
            "steps": steps,
            "env": dict(self.env),
            "rlimits": {
                "RLIMIT_AS": self.memory_bytes,
                "RLIMIT_NPROC": self.processes,
                "RLIMIT_FSIZE": self.file_size_bytes,
            },
            "timeout": sum(step["timeout"] for step in steps) + 1.0,
        }


def missing(toolchain: Toolchain) -> str | None:
    """Why ``toolchain`` cannot run here (naming what to install), or None when it can."""
    absent = [tool for tool in toolchain.tools if not _runnable(tool)]
    absent += [path for path in toolchain.files if not os.path.isfile(path)]
    if not absent:
        return None
    return (
        f"the {toolchain.language} toolchain is missing ({', '.join(absent)} not found on "
        f"{SANDBOX_PATH}): install Debian's {toolchain.package} (`make toolchains` does, as root)"
    )


def _runnable(tool: str) -> bool:
    """On the sandbox's PATH and executable by any user (programs run under another uid)."""
    path = shutil.which(tool, path=SANDBOX_PATH)
    return path is not None and os.stat(path).st_mode & 0o001 != 0


TOOLCHAINS: dict[str, Toolchain] = {
    "js": Toolchain(
        language="JavaScript",
        file_name="program.js",
        compile=None,
        run=("node", "program.js"),
        tools=("node",),
        package="nodejs",
        env={"UV_THREADPOOL_SIZE": "2"},
        # V8 reserves its heap cage up front; its own heap limit keeps the real use bounded.
        memory_bytes=8 * 1024**3,
    ),
    "java": Toolchain(
        language="Java",
        file_name="Problem.java",
        compile=(
            "javac",
            *(f"-J{flag}" for flag in _SERIAL_JVM),
            "-encoding",
            "UTF8",
            "-cp",
            JAVATUPLES,
            "-d",
            ".",
            "Problem.java",
        ),  # fmt: skip
        run=("java", *_SERIAL_JVM, "-Xmx512m", "-ea", "-cp", f".:{JAVATUPLES}", "Problem"),
        tools=("javac", "java"),
        files=(JAVATUPLES,),
        package="default-jdk-headless and libjavatuples-java",
        memory_bytes=4 * 1024**3,  # the JVM sizes its reservations to the limit; 2 GiB is too few
    ),
    "cpp": Toolchain(
        language="C++",
        file_name="program.cpp",
        compile=("g++", "-std=c++17", "-o", "program", "program.cpp"),
        run=("./program",),
        tools=("g++",),
        package="g++",
    ),
    "rs": Toolchain(
        language="Rust",
        file_name="program.rs",
        compile=("rustc", "--edition", "2021", "-o", "program", "program.rs"),
        run=("./program",),
        tools=("rustc",),
        package="rustc",
    ),
    "go": Toolchain(
        language="Go",
        file_name="program_test.go",  # the tests are Test functions of a _test.go file
        compile=("go", "test", "-c", "-o", "program.test", "program_test.go"),  # as `go test`
        run=("./program.test",),
        tools=("go",),
        package="golang-go",
        # No network and no toolchain downloads; one cache per program, in its own home.
        env={
            "GOMAXPROCS": "2",
            "GOFLAGS": "-p=2",
            "GOPROXY": "off",
            "GOTOOLCHAIN": "local",
            "CGO_ENABLED": "0",
            "GO111MODULE": "off",
        },  # fmt: skip
    ),
}
