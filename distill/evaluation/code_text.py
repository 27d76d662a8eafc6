"""Text work shared by the benchmarks: chat prompts, stop sequences and code extraction.

Chat code is sanitized as EvalPlus does: only imports, definitions and assignments stay, so the
model's own tests (asserts, prints, calls) neither run nor decide the verdict, and lines a token
limit cut off are dropped from the end until the code parses.
"""

from __future__ import annotations

import ast
import re
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # transformers is slow to import; scoring a samples file needs none of it
    from transformers import PreTrainedTokenizerBase


PROMPT_FORMATS: tuple[str, ...] = ("chat", "completion")

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)
_MAIN_GUARD = re.compile(r"^if\s+__name__\s*==", re.MULTILINE)


def truncate_at_stop(text: str, stop_sequences: Sequence[str]) -> str:
    """Cut ``text`` at the earliest stop sequence (the whole text if none occurs)."""
    cut = min((i for i in (text.find(s) for s in stop_sequences) if i != -1), default=len(text))
    return text[:cut]


def has_fence(text: str) -> bool:
    """Whether ``text`` holds a fenced code block (closed or cut off)."""
    return _FENCE.search(text) is not None


def fenced_blocks(text: str) -> list[str]:
    """The bodies of every fenced code block, in order (a cut-off last block runs to the end)."""
    return _FENCE.findall(text)


def closed_blocks(text: str) -> list[str]:
    """The bodies of the fenced code blocks that are closed, in order (not a cut-off last one)."""
    return [m.group(1) for m in _FENCE.finditer(text) if m.group(0).endswith("```")]


def holds_defining_block(text: str, entry_point: str) -> bool:
    """Whether a chat answer so far holds a closed fenced block that defines ``entry_point``.

    :func:`extract_code` takes the first such block whatever text follows it, so a generation may
    stop there: the sample is the one the whole answer would give.
    """
    return any(defines(textwrap.dedent(block), entry_point) for block in closed_blocks(text))


def extract_code(text: str, entry_point: str) -> str:
    """Extract code from a chat answer.

    Takes the first fenced block that defines ``entry_point`` at top level, else the first fenced
    block; an opening fence without a closing one (a cut-off answer) runs to the end. Without
    any fence the whole text is returned.

    Args:
        text: The raw chat answer.
        entry_point: Name of the function the problem asks for.

    Returns:
        The code, dedented, without a trailing ``if __name__ == "__main__":`` block.
    """
    blocks = [textwrap.dedent(block) for block in fenced_blocks(text)]
    defining = [block for block in blocks if defines(block, entry_point)]
    code = (defining or blocks or [textwrap.dedent(text)])[0]
    guard = _MAIN_GUARD.search(code)
    return code[: guard.start()] if guard else code


# Top-level statements that define the program; anything else (assert, print, a loop over test
# cases) is the model testing its own code.
_DEFINITIONS = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Assign,
    ast.AnnAssign,
    ast.Pass,
)


def strip_test_code(code: str, entry_point: str) -> str:
    """Keep the program, drop the model's own tests (EvalPlus's sanitizer, on the stdlib ``ast``).

    Lines are dropped from the end until the code parses (an answer cut off by the token limit,
    typically inside its trailing tests); of the top-level statements only imports, definitions
    and assignments stay (conditional imports too), in their original text.

    Args:
        code: Dedented code from :func:`extract_code`.
        entry_point: Name of the function the problem asks for.

    Returns:
        The sanitized code; ``code`` unchanged when no prefix of it parses into a program that
        defines ``entry_point`` (a bare function body, say).
    """
    lines = code.split("\n")
    for end in range(len(lines), 0, -1):
        source = "\n".join(lines[:end])
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        kept = [node for node in tree.body if _is_definition(node)]
        text = "\n".join("\n".join(lines[_first_line(node) - 1 : node.end_lineno]) for node in kept)
        return text + "\n" if defines(text, entry_point) else code
    return code


def _is_definition(node: ast.stmt) -> bool:
    if isinstance(node, ast.If | ast.Try):  # `try: import x` / `if sys.version...: import y`
        return not _MAIN_GUARD.match(ast.unparse(node)) and all(
            _is_definition(child)
            for child in ast.iter_child_nodes(node)
            if isinstance(child, ast.stmt)
        )
    return isinstance(node, _DEFINITIONS)


def _first_line(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", [])
    return min([node.lineno, *(d.lineno for d in decorators)])


def chat_completion(code: str, entry_point: str) -> str:
    """Make extracted chat code into a completion appended to the prompt (see module docstring).

    Args:
        code: Dedented code from :func:`extract_code`.
        entry_point: Name of the function the problem asks for.

    Returns:
        ``"\\n" + code`` if it defines ``entry_point`` at top level, else ``code`` indented as the
        body of the prompt's function.
    """
    code = code.strip("\n") + "\n"
    if defines(code, entry_point):
        return "\n" + code
    return textwrap.indent(code, "    ")


def defines(code: str, entry_point: str) -> bool:
    """Whether ``code`` defines ``entry_point`` at top level."""
    return re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def check_format(prompt_format: str) -> None:
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(
            f"eval.prompt_format={prompt_format!r} is not supported; "
            f"allowed: {', '.join(PROMPT_FORMATS)}."
        )


def chat_prompt(tokenizer: PreTrainedTokenizerBase, content: str) -> str:
    """``content`` as one user message, chat-templated, with the generation prompt appended.

    Raises:
        ValueError: If the tokenizer has no chat template.
    """
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "eval.prompt_format='chat' needs a tokenizer with a chat template; this one has none. "
            "Set student.prompt_format (e.g. alpaca for base code models) or use "
            "eval.prompt_format=completion."
        )
    messages = [{"role": "user", "content": content}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
