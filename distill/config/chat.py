"""Chat: ask a trained student (or an exported model, or the teacher) a question."""

from __future__ import annotations

from dataclasses import dataclass

from distill.config.base import Checks


@dataclass
class ChatConfig:
    """`distill chat`: one prompt (`chat.prompt`) or, without one, a conversation on stdin.

    `model` is `student` (with `adapters`, else the student before distillation), `teacher`, or
    an exported model's folder; the answer streams as it is generated, greedy unless
    `temperature` > 0. `run_code` runs the answer's first fenced Python block in the sandbox.
    """

    model: str = "student"
    adapters: str | None = None
    prompt: str | None = None
    system: str | None = None
    max_new_tokens: int = 512
    temperature: float = 0.0
    run_code: bool = False
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        check = Checks()
        check.require(self.max_new_tokens >= 1, "chat.max_new_tokens must be >= 1")
        check.require(self.temperature >= 0, "chat.temperature must be >= 0 (0: greedy)")
        check.require(self.timeout_s > 0, "chat.timeout_s must be > 0")
        check.done()
