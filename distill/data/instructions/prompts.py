"""The prompt text of every task kind, for any of the six languages.

Each prompt asks for the answer's code in one fenced block tagged with the language (so
`quality.extract_code` finds it) and, where the task allows, tests inside that same block (so the
compile check and, for Python, the test run see them). Code the answer must show but that is not
the answer (a buggy or slow first version) goes in a ```text block, which extraction skips.
"""

from __future__ import annotations

from distill.data.instructions.languages import (
    LANGUAGES,
    TYPES,
    identifier,
    parse_signature,
    render_signature,
)
from distill.data.instructions.specs import Spec

ONE_BLOCK = "Answer with the complete code in a single ```{tag} fenced block."
STDLIB = "Use only the standard library."

KIND_TEMPLATES: dict[str, str] = {
    "implement": (
        "Write a {lang} function `{sig}` that {desc}.{context}\n{tests} "
        + STDLIB
        + "\n"
        + ONE_BLOCK
    ),
    "complete": (
        "Complete this {lang} code{context_short}:\n\n```{tag}\n{stub}\n```\n\n{tests}\n"
        "Answer with the completed code in a single ```{tag} fenced block."
    ),
    "fix_bug": (
        "A first attempt at a {lang} function `{sig}`, which {desc}, has {bug}.{context}\n"
        "Show that buggy attempt in a ```text block, explain the bug in one or two sentences, "
        "then give the corrected code in a single ```{tag} fenced block. {tests}"
    ),
    "write_tests": (
        "Write a {lang} function `{sig}` that {desc}, and a thorough unit test suite for it: "
        "{unit_tests}. Cover typical cases, edge cases (empty and extreme inputs) and invalid "
        "input where it applies.{context}\nAnswer with the function and its tests in a single "
        "```{tag} fenced block."
    ),
    "refactor": (
        "Consider a {lang} function `{sig}` that {desc}.{context}\nWrite a working but "
        "hard-to-read first version with {smell} in a ```text block; then refactor it into clean, "
        "idiomatic {lang} with the same behaviour and list the changes briefly. Give the "
        "refactored code in a single ```{tag} fenced block. {tests}"
    ),
    "optimise": (
        "Consider a {lang} function `{sig}` that {desc}.{context}\nShow a straightforward but slow "
        "version in a ```text block and state its time complexity; then write a faster version, "
        "state its complexity and why it is faster. Give the fast code in a single ```{tag} "
        "fenced block. {tests}"
    ),
    "data_structure": (
        "Implement a `{name}` data structure in {lang} as {container}: {desc}.{context}\n"
        "{tests} " + STDLIB + "\n" + ONE_BLOCK
    ),
    "algorithm": (
        "Solve this algorithmic problem in {lang}: {desc}.{context}\nName the main function "
        "`{fname}`. First explain the approach and its time and space complexity in a few "
        "sentences, then give the complete solution in a single ```{tag} fenced block. {tests} "
        + STDLIB
    ),
    "explain_then_code": (
        "Explain in two sentences how you would write a {lang} function `{sig}` that {desc}, "
        "then give the code in a single ```{tag} fenced block.{context}\n{tests}"
    ),
}
TASK_KINDS = tuple(KIND_TEMPLATES)
POOLS = {"data_structure": "data_structures", "algorithm": "algorithms"}  # else: function specs

SNIPPET_KINDS: dict[str, str] = {
    "implement": "function-implementation exercise",
    "complete": "code-completion exercise (partial code shown in a ```text block)",
    "fix_bug": "find-and-fix-the-bug exercise (buggy code shown in a ```text block)",
    "write_tests": "exercise asking for a function together with a thorough unit test suite",
    "refactor": "refactoring exercise (the code to refactor shown in a ```text block)",
    "optimise": "performance exercise (slow code shown in a ```text block)",
    "data_structure": "data-structure design exercise",
    "algorithm": "algorithmic problem whose solution states its time and space complexity",
    "explain_then_code": "exercise whose solution first explains the approach, then gives the code",
}  # fmt: skip
SNIPPET_TEMPLATE = (
    "Here is a {lang} snippet from an open-source project:\n\n```{tag}\n{snippet}\n```\n\n"
    "Gain inspiration from it to create a self-contained, {difficulty} {kind} in {lang}. "
    "Present the problem under a `### Problem` heading (complete on its own, without referring to "
    "the snippet), then the solution under `### Solution`, with its code in a single ```{tag} "
    "fenced block. {tests} " + STDLIB
)


def render(
    task_kind: str,
    language: str,
    spec: Spec,
    topic: str | None = None,
    variant: int = 0,
) -> str:
    """The prompt for one (kind, language, spec, topic); `variant` picks a bug kind or a smell."""
    from distill.data.instructions.specs import BUG_KINDS, SMELLS

    lang = LANGUAGES[language]
    fields = {
        "lang": lang.name,
        "tag": lang.tag,
        "desc": spec.description,
        "name": spec.name,
        "fname": identifier(spec.name, lang.style),
        "tests": lang.tests,
        "unit_tests": lang.unit_tests,
        "container": lang.container,
        "bug": BUG_KINDS[variant % len(BUG_KINDS)],
        "smell": SMELLS[variant % len(SMELLS)],
        "context": f" It is used in {topic}; draw the examples in the tests from there."
        * bool(topic),
        "context_short": f" (it is used in {topic})" * bool(topic),
    }
    if task_kind not in POOLS:
        fields["sig"] = render_signature(spec.name, language)
        fields["stub"] = stub(spec, language)
    return KIND_TEMPLATES[task_kind].format(**fields)


def render_snippet(task_kind: str, language: str, difficulty: str, snippet: str) -> str:
    """An OSS-Instruct prompt: a real snippet, and a request for a problem inspired by it."""
    lang = LANGUAGES[language]
    return SNIPPET_TEMPLATE.format(
        lang=lang.name,
        tag=lang.tag,
        snippet=snippet,
        difficulty=difficulty,
        kind=SNIPPET_KINDS[task_kind],
        tests=lang.tests,
    )


def stub(spec: Spec, language: str) -> str:
    """A function declaration with its doc comment and an empty body, in `language`."""
    sig = render_signature(spec.name, language)
    doc = spec.description[:1].upper() + spec.description[1:] + "."
    if language == "python":
        return f'{sig}:\n    """{doc}"""\n'
    if language == "javascript":
        _, params, ret = parse_signature(spec.name)
        tags = "".join(f" * @param {{{TYPES[t][0]}}} {identifier(a, 'camel')}\n" for a, t in params)
        head = sig.split("  //")[0]
        return (
            f"/**\n * {doc}\n{tags} * @returns {{{TYPES[ret][0]}}}\n */\n{head} {{\n  // TODO\n}}"
        )
    if language == "java":
        body = f"    /** {doc} */\n    {sig} {{\n        // TODO\n    }}\n"
        return f"import java.util.*;\n\npublic class Solution {{\n{body}}}"
    if language == "go":
        name = sig.split("(")[0].removeprefix("func ")
        return f"// {name} {doc[:1].lower() + doc[1:]}\n{sig} {{\n\t// TODO\n}}"
    if language == "rust":
        use = "use std::collections::HashMap;\n\n" * ("HashMap" in sig)
        return f"{use}/// {doc}\n{sig} {{\n    todo!()\n}}"
    headers = [h for h in ("map", "optional", "string", "vector") if f"std::{h}" in sig]
    includes = "".join(f"#include <{h}>\n" for h in headers) + "\n" * bool(headers)
    return f"{includes}// {doc}\n{sig} {{\n    // TODO\n}}"
