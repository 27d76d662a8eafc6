"""The teacher interface shared by local Hugging Face models and Claude."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from omegaconf import DictConfig

Messages = list[dict[str, str]]


@dataclass
class Answer:
    """One teacher answer with its token usage and cost."""

    text: str
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0


class Teacher(Protocol):
    """Answers prompts. `white_box` teachers also expose their model for logits."""

    name: str
    white_box: bool

    def settings(self) -> dict[str, Any]:
        """Everything that changes an answer besides the prompt (part of each record's id)."""
        ...

    def answer(self, conversations: list[Messages]) -> Iterator[tuple[int, Answer]]:
        """Yield (index into `conversations`, answer) as soon as each answer exists."""
        ...


def build_teacher(cfg: DictConfig) -> Teacher:
    """The text teacher for the `teacher` config group."""
    if cfg.kind == "hf":
        from distill.teachers.hf import HFTeacher

        return HFTeacher.from_config(cfg)
    from distill.teachers.claude import ClaudeTeacher

    return ClaudeTeacher.from_config(cfg)
