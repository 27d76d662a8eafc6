"""The exceptions distill raises for problems a user fixes; the bottom of the import graph."""

from __future__ import annotations


class UserError(Exception):
    """A problem the user fixes (config, data, missing package): reported without a traceback."""


class ConfigError(UserError, ValueError):
    """Every problem found in a config, reported together."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{len(problems)} problem(s) in the config:\n{lines}")
