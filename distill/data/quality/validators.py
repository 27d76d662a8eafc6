"""Syntax and compile checks of extracted code, for the six template languages.

Syntax is checked in process with tree-sitter grammars from PyPI (a tree with an ERROR or MISSING
node is a syntax error). The compile check runs the language's real front end in a temporary
directory, with a timeout, when its toolchain is installed: `compile()` for Python (never
executed), `node --check`, `javac`, `g++ -fsyntax-only`, `rustc --emit=metadata` (tests included)
and `go vet`. A missing toolchain gives `ok=None` and says so; it never fails a record.
"""

from __future__ import annotations

import functools
import importlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass

GRAMMARS = {
    "python": "tree_sitter_python",
    "javascript": "tree_sitter_javascript",
    "java": "tree_sitter_java",
    "cpp": "tree_sitter_cpp",
    "go": "tree_sitter_go",
    "rust": "tree_sitter_rust",
}
TOOLCHAINS = {"javascript": "node", "java": "javac", "cpp": "g++", "rust": "rustc", "go": "go"}
JAVA_PUBLIC_TYPE = re.compile(
    r"^\s*public\s+(?:(?:abstract|final|sealed|strictfp)\s+)*(?:class|interface|enum|record)\s+(\w+)",
    re.MULTILINE,
)
ES_MODULE = re.compile(r"^\s*(?:import\s[^(]|export\s)", re.MULTILINE)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    Attributes:
        ok: True or False; None when the check could not run (no grammar, no toolchain).
        detail: "ok", the first error (with its line), "timed out" or "toolchain missing: <tool>".
    """

    ok: bool | None
    detail: str


@functools.cache
def _grammar(language: str):  # tree_sitter.Language | None
    module = GRAMMARS.get(language)
    if module is None:
        return None
    try:
        import tree_sitter

        grammar = importlib.import_module(module)
    except ImportError:
        return None
    return tree_sitter.Language(grammar.language())


def _parser(language: str):  # tree_sitter.Parser | None
    """A fresh parser per call: parsers are cheap, and not safe to share between threads."""
    grammar = _grammar(language)
    if grammar is None:
        return None
    import tree_sitter

    return tree_sitter.Parser(grammar)


def syntax_check(code: str, language: str) -> CheckResult:
    """Parse `code` with the language's tree-sitter grammar; the first error node's position."""
    if not code.strip():
        return CheckResult(False, "no code")
    parser = _parser(language)
    if parser is None:
        if language not in GRAMMARS:
            return CheckResult(None, f"no grammar for {language!r}")
        return CheckResult(
            None, f"grammar missing: pip install {GRAMMARS[language].replace('_', '-')}"
        )
    root = parser.parse(code.encode("utf-8", errors="replace")).root_node
    if not root.has_error:
        return CheckResult(True, "ok")
    node = _first_error(root)
    row, col = node.start_point if node is not None else (0, 0)
    kind = "missing " + node.type if node is not None and node.is_missing else "unexpected input"
    return CheckResult(False, f"syntax error: {kind} at line {row + 1}, column {col + 1}")


def _first_error(node):  # tree_sitter.Node | None
    """Depth-first, descending only into subtrees that hold an error."""
    if node.type == "ERROR" or node.is_missing:
        return node
    for child in node.children:
        if child.has_error or child.is_missing:
            found = _first_error(child)
            if found is not None:
                return found
    return None


@functools.cache
def toolchain(language: str) -> str | None:
    """The compiler/checker binary for `language` when installed (Python: always, in process)."""
    if language == "python":
        return "python"
    tool = TOOLCHAINS.get(language)
    return shutil.which(tool) if tool else None


def compile_check(code: str, language: str, timeout_s: float = 30.0) -> CheckResult:
    """Compile `code` without running it; `ok=None` when the toolchain is missing."""
    if not code.strip():
        return CheckResult(False, "no code")
    if language == "python":
        try:
            compile(code, "<answer>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as err:
            line = getattr(err, "lineno", None)
            return CheckResult(
                False, f"{type(err).__name__}: {err.args[0]}" + f" (line {line})" * bool(line)
            )
        return CheckResult(True, "ok")
    tool = toolchain(language)
    if tool is None:
        return CheckResult(None, f"toolchain missing: {TOOLCHAINS.get(language, language)}")
    with tempfile.TemporaryDirectory(prefix="distill-compile-") as tmp:
        name, argv = _command(code, language, tool, tmp)
        with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
            f.write(code)
        return _run(argv, tmp, timeout_s)


def _command(code: str, language: str, tool: str, tmp: str) -> tuple[str, list[str]]:
    """The source file name and the command that checks it."""
    if language == "javascript":
        name = "answer.mjs" if ES_MODULE.search(code) else "answer.js"
        return name, [tool, "--check", name]
    if language == "java":
        match = JAVA_PUBLIC_TYPE.search(code)
        name = f"{match.group(1) if match else 'Main'}.java"
        jvm = ["-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-J-Xshare:auto"]
        return name, [
            tool,
            *jvm,
            "-d",
            "classes",
            "-nowarn",
            "-proc:none",
            "-encoding",
            "UTF-8",
            name,
        ]
    if language == "cpp":
        return "answer.cpp", [tool, "-std=c++20", "-fsyntax-only", "-w", "answer.cpp"]
    if language == "rust":  # --test also type-checks the #[cfg(test)] module
        argv = [tool, "--edition", "2021", "--test", "--emit=metadata", "--cap-lints", "allow"]
        return "answer.rs", [*argv, "-o", "answer.rmeta", "answer.rs"]
    return "answer.go", [tool, "vet", "answer.go"]


def _run(argv: list[str], cwd: str, timeout_s: float) -> CheckResult:
    """Run a checker in its own process group (a compiler's children die with it on timeout)."""
    env = dict(os.environ, TMPDIR=cwd, GOCACHE=os.path.join(cwd, ".gocache"), GOPATH=cwd)
    env.update(GOPROXY="off", GOTOOLCHAIN="local")  # offline: the standard library only
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return CheckResult(False, f"timed out after {timeout_s:g}s")
    if proc.returncode == 0:
        return CheckResult(True, "ok")
    return CheckResult(False, _first_error_line(out.decode("utf-8", errors="replace")))


def _first_error_line(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return ((errors or lines or ["failed without output"])[0])[:300]
