import pytest

from distill.config import EvalConfig
from distill.evaluation.benchmarks import (
    Problem,
    benchmark_for,
    load_humaneval,
    load_problems,
    mbpp_records,
)
from distill.evaluation.benchmarks.humaneval import STOP_SEQUENCES
from distill.evaluation.benchmarks.mbpp import MBPP_SHOTS
from distill.evaluation.code_text import (
    chat_completion,
    extract_code,
    strip_test_code,
    truncate_at_stop,
)
from distill.evaluation.execution import build_program, run_programs
from distill.evaluation.prompts import (
    POSTPROCESS_VERSION,
    build_prompt,
    postprocess,
    sample_key,
    stop_sequences,
)
from distill.evaluation.scoring import score

from .test_benchmarks import MBPP_DIR, needs_mbpp

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
    assert truncate_at_stop(raw, STOP_SEQUENCES) == expected


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


def test_chat_own_tests_and_cut_off_tail_are_dropped() -> None:
    problem = PROBLEMS[2]  # truncate_number
    code = problem.prompt + problem.canonical_solution
    wrong_test = (
        "\n# Test cases\nassert truncate_number(3.5) == 0.25\nprint(truncate_number(1.5))\n"
    )
    cut_off = "\nassert truncate_number(3.5) == 0.5\nassert truncate_number(1.25) == (0."
    answers = [f"```python\n{code}{wrong_test}```", f"```python\n{code}{cut_off}"]
    samples = [postprocess(a, problem, "chat") for a in answers]
    assert all("assert" not in s and "print" not in s for s in samples)
    programs = [build_program(problem, s) for s in samples]
    # Unsanitized, the first answer fails on its own wrong assert, the second on a SyntaxError.
    programs += [
        build_program(
            problem, chat_completion(extract_code(a, problem.entry_point), problem.entry_point)
        )
        for a in answers
    ]
    verdicts = [r.result for r in run_programs(programs, timeout_s=10.0, workers=2)]
    assert verdicts == ["passed", "passed", "failed: AssertionError", "failed: SyntaxError"]


def test_strip_test_code_keeps_definitions_in_their_text() -> None:
    code = (
        "import math\ntry:\n    import numpy as np\nexcept ImportError:\n    np = None\n"
        "LIMIT: int = 3  # cap\n\n@functools.cache\ndef f(x):\n    # doubles\n    return 2 * x\n"
        "\nclass C:\n    pass\n\nfor x in range(3):\n    assert f(x) == 2 * x\nf(1)\n"
    )
    kept = code[: code.index("\nfor x")].replace("\n\n", "\n")  # blank lines between go
    assert strip_test_code(code, "f") == kept
    body = "return 2 * x\n"  # no definition of the entry point: left to chat_completion
    assert strip_test_code(body, "f") == body
    assert strip_test_code("def g():\n    pass\nassert g() is None\n", "f").startswith("def g")


# --- MBPP -----------------------------------------------------------------------------------

MBPP = load_problems("mbpp", 5, MBPP_DIR) if MBPP_DIR.is_dir() else []


@needs_mbpp
def test_mbpp_shots_are_task_ids_2_3_4() -> None:
    records = mbpp_records("mbpp", MBPP_DIR)
    for (text, code, asserts), task_id in zip(MBPP_SHOTS, (2, 3, 4), strict=True):
        assert text == records[task_id]["text"]
        assert code == records[task_id]["code"]
        assert list(asserts) == records[task_id]["test_list"]


@needs_mbpp
def test_mbpp_completion_prompt_layout(char_tokenizer) -> None:
    problem = MBPP[0]
    prompt = build_prompt(problem, char_tokenizer, "completion")
    blocks = prompt.split("\n\n")
    intro = "You are an expert Python programmer, and here is your task: "
    # Three solved shots, then the task: lm-evaluation-harness's layout of the paper's prompt.
    assert prompt.count(intro) == 4 and prompt.count("[DONE]") == 3
    assert prompt.startswith(intro + MBPP_SHOTS[0][0] + " Your code should pass these tests:")
    assert "[BEGIN]\ndef similar_elements(test_tup1, test_tup2):\n" in prompt
    expected_tail = (
        f"{intro}{problem.prompt} Your code should pass these tests:\n\n"
        + "\n".join(problem.test.splitlines())
        + "\n[BEGIN]\n"
    )
    assert prompt.endswith(expected_tail)
    assert blocks[-2] == intro + problem.prompt + " Your code should pass these tests:"
    assert stop_sequences("mbpp", "completion") == ("[DONE]",)
    assert stop_sequences("humaneval", "completion") == STOP_SEQUENCES
    assert stop_sequences("mbpp_sanitized", "chat") == ()


@needs_mbpp
def test_mbpp_chat_prompt_holds_task_and_asserts(char_tokenizer) -> None:
    problem = MBPP[1]
    text = build_prompt(problem, char_tokenizer, "chat")
    assert text.startswith("<|im_start|>user\n") and text.endswith("<|im_start|>assistant\n")
    assert problem.prompt in text and all(a in text for a in problem.test.splitlines())
    assert "[BEGIN]" not in text and "```python" in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("def f(x):\n    return x\n[DONE]\n\nYou are an expert", "def f(x):\n    return x\n"),
        ("def f(x):\n    return x\n", "def f(x):\n    return x\n"),
        ("\ndef f(x): return x [DONE]", "def f(x): return x \n"),
        ("```python\ndef f(x):\n    return x\n```\nIt works.\n[DONE]", "def f(x):\n    return x\n"),
    ],
)
def test_mbpp_completion_postprocess(raw: str, expected: str) -> None:
    problem = Problem("Mbpp/0", "text", "assert f(1) == 1", "f", "", benchmark="mbpp")
    assert postprocess(raw, problem, "completion") == expected
    assert sample_key(problem) == "solution" and sample_key(PROBLEMS[0]) == "completion"


@needs_mbpp
def test_mbpp_reference_solutions_pass_through_both_formats() -> None:
    samples = []
    for p in MBPP:
        samples.append(
            {
                "task_id": p.task_id,
                "solution": postprocess(
                    p.canonical_solution + "\n[DONE]\n\nYou are", p, "completion"
                ),
            }
        )
        answer = f"Sure:\n```python\n{p.canonical_solution}\n```\nDone."
        samples.append({"task_id": p.task_id, "solution": postprocess(answer, p, "chat")})
    rows, metrics = score(MBPP, samples, EvalConfig(k=[1], workers=2), progress=False)
    assert [r["passed"] for r in rows] == [True] * len(samples)
    assert metrics["eval/mbpp/pass@1"] == 1.0


def test_postprocess_version_is_recorded_string() -> None:
    assert isinstance(POSTPROCESS_VERSION, str) and POSTPROCESS_VERSION == "3"


def _first_complete(raw: str, problem: Problem) -> int | None:
    """The shortest prefix length at which the benchmark says the answer is complete."""
    bench = benchmark_for(problem)
    return next(
        (n for n in range(len(raw) + 1) if bench.answer_complete(raw[:n], problem, "chat")), None
    )


@pytest.mark.parametrize("index", [0, 2, 5])
def test_a_chat_answer_is_complete_where_its_sample_is_decided(index) -> None:
    problem = PROBLEMS[index]
    code = problem.prompt + problem.canonical_solution
    usage = f"```python\nprint({problem.entry_point}(1))\n```"
    raw = f"First, a call:\n{usage}\nThen the code:\n```python\n{code}```\n\nWhy:\n{usage}\nDone."
    end = raw.index("```", raw.index(code)) + 3  # the close of the block that defines it
    assert _first_complete(raw, problem) == end
    # From there on, whatever follows, the sample is the whole answer's.
    sample = postprocess(raw, problem, "chat")
    assert all(postprocess(raw[:n], problem, "chat") == sample for n in range(end, len(raw) + 1))
    # An answer cut off inside its code, or with no block defining the function, never is.
    assert _first_complete(raw[: end - 1], problem) is None
    assert _first_complete(f"{usage}\n{usage}\nno code", problem) is None
    assert not benchmark_for(problem).answer_complete(raw, problem, "completion")
