"""Quality control of teacher answers: code extraction and syntax validation."""

from __future__ import annotations

import ast
import re

FENCE = re.compile(r"```[ \t]*([\w+#-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str, language: str = "python") -> str:
    """The first fenced block tagged `language` (else the first fenced block); "" when none."""
    blocks = FENCE.findall(text)
    for tag, body in blocks:
        if tag.lower() in (language, language[:2]):
            return body.strip("\n")
    return blocks[0][1].strip("\n") if blocks else ""


def python_syntax_ok(code: str) -> bool:
    """Whether `code` parses as Python (never executed)."""
    if not code.strip():
        return False
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def checks_for(code: str, language: str) -> dict[str, object]:
    """The `checks` field of a record."""
    syntax = python_syntax_ok(code) if language == "python" else None
    return {"has_code": bool(code.strip()), "syntax": syntax, "tests_run": 0, "tests_passed": 0}
