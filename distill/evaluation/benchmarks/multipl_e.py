"""MultiPL-E (Cassano et al. 2023, arXiv 2208.08227): HumanEval in JavaScript, Java, C++, Rust and
Go, MultiPL-E's ``reworded`` prompts with their test programs.

A sample is a *completion* of the prompt (a signature and doc comment); the program is
``prompt + completion + "\\n" + tests``, exactly as MultiPL-E's evaluator writes it, and it passes
when it builds and its tests exit with status 0. It is built and run inside the sandbox by the
language's :class:`~distill.evaluation.toolchains.Toolchain`; where that toolchain is missing the
benchmark is skipped (:meth:`MultiPLE.unavailable`), never scored as failing.

* ``"completion"``: the model continues the prompt; the generation is cut at the problem's stop
  tokens (MultiPL-E's own, the same for every problem of a language).
* ``"chat"``: the model answers with the function in a fenced block. Its body becomes the
  completion, closed as the tests expect (their first line closes the function in Java, C++ and
  Rust); other top-level functions of the answer come along where the language allows them after
  the entry point (JavaScript, Go) or inside it (Rust); in Java and C++ they are dropped, so the
  chat message asks for one self-contained function.

The data must never become training data (its license forbids it): it is a decontamination
source (``data.quality``), and its files are hidden from the programs the sandbox runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from distill.evaluation.benchmarks.base import Benchmark, register_benchmark
from distill.evaluation.code_text import closed_blocks, fenced_blocks, truncate_at_stop
from distill.evaluation.problem import Problem
from distill.evaluation.toolchains import TOOLCHAINS, Toolchain, missing

_CALLED = re.compile(r"(\w+)\s*\(")


class MultiPLE(Benchmark):
    """One language of MultiPL-E's HumanEval; a leaf sets the class attributes.

    Attributes:
        lang: MultiPL-E's language key (``js``, ``java``, ``cpp``, ``rs``, ``go``).
        stops: MultiPL-E's stop tokens for the language (completion prompts).
        closed_by_tests: The tests begin by closing the function, so a completion ends inside it.
        helper: A top-level function definition other than the entry point's, where helpers may
            follow the entry point (``None``: helpers are dropped).
    """

    lang = ""
    stops: tuple[str, ...] = ()
    closed_by_tests = True
    helper: re.Pattern[str] | None = None
    env_var = "DISTILL_MULTIPLE_PATH"
    data_hint = "a folder with MultiPL-E's humaneval-<lang>-reworded.jsonl files"

    @property
    def toolchain(self) -> Toolchain:
        return TOOLCHAINS[self.lang]

    # -- data -------------------------------------------------------------------------------
    def data_files(self, data_path: Path) -> list[str]:
        return [f"humaneval-{self.lang}-reworded.jsonl"]

    def load_all(self, data_path: Path | None) -> list[Problem]:
        path = Path(data_path) / self.data_files(Path(data_path))[0]
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
        rows.sort(key=lambda row: int(row["name"].split("_")[1]))
        return [
            Problem(
                task_id=row["name"],
                prompt=row["prompt"],
                test=row["tests"],
                entry_point=entry_point(row["prompt"]),
                canonical_solution="",  # MultiPL-E has none
                benchmark=self.name,
            )
            for row in rows
        ]

    def unavailable(self) -> str | None:
        return missing(self.toolchain)

    # -- asking the model -------------------------------------------------------------------
    def chat_message(self, problem: Problem) -> str:
        return (
            f"Complete the following {self.toolchain.language} function. Answer with the "
            f"complete function, self-contained (no other functions or classes), in a single "
            f"```{self.language} code block.\n\n```{self.language}\n{problem.prompt.strip()}\n```"
        )

    def stop_sequences(self, prompt_format: str) -> tuple[str, ...]:
        return self.stops if prompt_format == "completion" else ()

    def postprocess(self, raw: str, problem: Problem, prompt_format: str) -> str:
        if prompt_format == "completion":
            return truncate_at_stop(raw, self.stops)
        blocks = fenced_blocks(raw)
        code = next((b for b in blocks if _definition(b, problem.entry_point)), None)
        return self.chat_completion(code or (blocks or [raw])[0], problem.entry_point)

    def answer_complete(self, text: str, problem: Problem, prompt_format: str) -> bool:
        # postprocess takes the first block that defines the entry point: once one is closed
        return prompt_format == "chat" and any(
            _definition(block, problem.entry_point) for block in closed_blocks(text)
        )

    def chat_completion(self, code: str, entry: str) -> str:
        """The completion a chat answer's code becomes (see the module docstring)."""
        found = _definition(code, entry)
        if found is None:  # no definition: the code is the body
            body, helpers = code, ""
        else:
            start, open_brace, close_brace = found
            body = code[open_brace + 1 : close_brace]
            helpers = self.helpers(code[:start] + code[close_brace + 1 :])
        body = body.strip("\n") + "\n"
        if self.closed_by_tests:
            return helpers + body  # Rust's items may open the body; elsewhere none are kept
        return body + "}\n" + helpers

    def helpers(self, rest: str) -> str:
        """The other top-level functions of an answer that may come along."""
        if self.helper is None:
            return ""
        kept = []
        for match in self.helper.finditer(rest):
            found = _definition(rest[match.start() :], match.group(1))
            if found is not None and match.group(1) != "main":
                kept.append(rest[match.start() : match.start() + found[2] + 1] + "\n")
        return "".join(kept)

    # -- running the code -------------------------------------------------------------------
    def program(self, problem: Problem, sample: str) -> str:
        # Exactly as MultiPL-E's evaluator assembles it.
        return problem.prompt + sample + "\n" + problem.test

    def job(
        self, problem: Problem, sample: str, mode: str, timeout_s: float
    ) -> tuple[dict[str, Any] | None, Any]:
        if mode != "compatible":
            return None, None  # the verdict is the program's own exit: no strict form
        return self.toolchain.job(self.program(problem, sample), timeout_s), None


def entry_point(prompt: str) -> str:
    """The name of the function a prompt declares (on its last line: ``... name(args) {``)."""
    last = prompt.rstrip().splitlines()[-1]
    match = _CALLED.search(last)
    return match.group(1) if match else ""


def _definition(code: str, name: str) -> tuple[int, int, int] | None:
    """Where ``name``'s definition is in ``code``: (start of its line, its opening brace, its
    closing brace); None when no ``name(...)`` is followed by a braced body."""
    for match in re.finditer(rf"\b{re.escape(name)}\s*\(", code):
        params_end = _matching(code, match.end() - 1, "(", ")")
        if params_end is None:
            continue
        after = re.search(r"[{;]", code[params_end:])
        if after is None or after.group() != "{":
            continue
        open_brace = params_end + after.start()
        close_brace = _matching(code, open_brace, "{", "}")
        if close_brace is not None:
            return code.rfind("\n", 0, match.start()) + 1, open_brace, close_brace
    return None


_SKIPPED = re.compile(
    r"""//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"|`(?:\\.|[^`\\])*`|'(?:\\.|[^'\\\n])*'""", re.DOTALL
)


def _matching(code: str, start: int, opening: str, closing: str) -> int | None:
    """The index of the bracket closing the one at ``start``, skipping comments and strings."""
    depth, i = 0, start
    while i < len(code):
        skipped = _SKIPPED.match(code, i)
        if skipped:
            i = skipped.end()
            continue
        if code[i] == opening:
            depth += 1
        elif code[i] == closing:
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


@register_benchmark("multipl_e_js")
class MultiPLEJavaScript(MultiPLE):
    title = "MultiPL-E JavaScript"
    language = "javascript"
    lang = "js"
    stops = ("\nfunction ", "\n/*", "\n//", "\nconsole.log")
    closed_by_tests = False
    helper = re.compile(r"^function\s+(\w+)\s*\(", re.MULTILINE)


@register_benchmark("multipl_e_java")
class MultiPLEJava(MultiPLE):
    title = "MultiPL-E Java"
    language = "java"
    lang = "java"
    stops = ("\n    }\n",)


@register_benchmark("multipl_e_cpp")
class MultiPLECpp(MultiPLE):
    title = "MultiPL-E C++"
    language = "cpp"
    lang = "cpp"
    stops = ("\n}",)


@register_benchmark("multipl_e_rs")
class MultiPLERust(MultiPLE):
    title = "MultiPL-E Rust"
    language = "rust"
    lang = "rs"
    stops = ("\n}",)
    helper = re.compile(r"^(?:pub\s+)?fn\s+(\w+)", re.MULTILINE)


@register_benchmark("multipl_e_go")
class MultiPLEGo(MultiPLE):
    title = "MultiPL-E Go"
    language = "go"
    lang = "go"
    stops = ("\nfunc", "struct", "\n// ")
    closed_by_tests = False
    helper = re.compile(r"^func\s+(\w+)\s*\(", re.MULTILINE)
