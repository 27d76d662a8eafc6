import pytest

from distill.evaluation.benchmarks import load_humaneval
from distill.evaluation.execution import build_program, run_programs
from distill.evaluation.prompts import (
    build_prompt,
    chat_completion,
    extract_code,
    postprocess,
    truncate_at_stop,
)

PROBLEMS = load_humaneval(8)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("    return x\n\ndef other():\n    pass\n", "    return x\n"),
        ("    return x\nclass A:\n    pass\n", "    return x"),
        ("    return x\n\n\nif __name__ == '__main__':\n    main()\n", "    return x\n\n"),
        ("    return x\nprint(f(1))\n", "    return x"),
        ("    return x\n# test\nassert f(1)\n", "    return x"),
        (
            "    # keep indented comments\n    return x\n",
            "    # keep indented comments\n    return x\n",
        ),
        ("    y = 1\n#a\ndef g():\n", "    y = 1"),
        ("def f(x):\n    return x\n", "def f(x):\n    return x\n"),
        ("", ""),
    ],
)
def test_truncate_at_stop(raw: str, expected: str) -> None:
    assert truncate_at_stop(raw) == expected


def test_completion_prompt_is_raw_prompt(char_tokenizer) -> None:
    problem = PROBLEMS[0]
    assert build_prompt(problem, char_tokenizer, "completion") == problem.prompt
    assert build_prompt(problem, char_tokenizer, "completion").endswith("\n")


def test_chat_prompt_uses_template(char_tokenizer) -> None:
    problem = PROBLEMS[0]
    text = build_prompt(problem, char_tokenizer, "chat")
    assert text.startswith("<|im_start|>user\n")
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert problem.prompt.strip() in text and "```python" in text


def test_chat_without_template_and_unknown_format_rejected(char_tokenizer) -> None:
    no_template = char_tokenizer.__class__(tokenizer_object=char_tokenizer.backend_tokenizer)
    with pytest.raises(ValueError, match="chat template"):
        build_prompt(PROBLEMS[0], no_template, "chat")
    with pytest.raises(ValueError, match="allowed: chat, completion"):
        build_prompt(PROBLEMS[0], char_tokenizer, "instruct")


def test_extract_code_prefers_block_defining_entry_point() -> None:
    text = (
        "Sure! First an example:\n```\nprint(f(1))\n```\nThen the code:\n"
        "```python\ndef f(x):\n    return x\n\nif __name__ == '__main__':\n    print(f(2))\n```\n"
    )
    assert extract_code(text, "f") == "def f(x):\n    return x\n\n"
    assert extract_code("```python\n    return 1\n", "f") == "return 1\n"
    assert extract_code("no code at all", "f") == "no code at all"


def test_chat_completion_body_only_is_indented() -> None:
    assert chat_completion("return a + b", "add") == "    return a + b\n"
    assert chat_completion("def add(a, b):\n    return a + b", "add").startswith("\ndef add(")


def _answer(problem, body_only: bool = False) -> str:
    code = problem.canonical_solution if body_only else problem.prompt + problem.canonical_solution
    return f"Here is the function:\n\n```python\n{code}```\n\nIt works because reasons."


def test_chat_fenced_canonical_solutions_pass() -> None:
    samples = [(p, postprocess(_answer(p), p, "chat")) for p in PROBLEMS]
    samples += [(p, postprocess(_answer(p, body_only=True), p, "chat")) for p in PROBLEMS[:3]]
    results = run_programs([build_program(p, c) for p, c in samples], timeout_s=10.0, workers=4)
    assert [r.result for r in results] == ["passed"] * len(samples)


def test_chat_wrong_function_fails() -> None:
    problem = PROBLEMS[2]  # truncate_number
    answer = "```python\ndef truncate_number(number: float) -> float:\n    return number\n```"
    program = build_program(problem, postprocess(answer, problem, "chat"))
    assert run_programs([program], timeout_s=10.0, workers=1)[0].result == "failed: AssertionError"
