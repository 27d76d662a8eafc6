"""The part of the teacher's config every teacher shares (each registered teacher extends it)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import MISSING

from distill.config.base import Checks


@dataclass
class TeacherConfig:
    """What every teacher's config holds; each registered teacher extends it with its own fields
    (`distill.teachers`: `hf` and `claude`), and its YAML files in conf/teacher/ start from that
    schema (`defaults: [schema/<kind>@_here_, _self_]`).

    `kind` names the registered teacher; `name` is recorded as the `teacher` of every record.
    """

    kind: str = MISSING
    name: str = MISSING
    max_new_tokens: int = 384
    system_prompt: str | None = None

    def __post_init__(self) -> None:
        check = Checks()
        check.require(self.max_new_tokens > 0, "teacher.max_new_tokens must be > 0")
        check.done()
