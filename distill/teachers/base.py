"""The teacher interface shared by local Hugging Face models and Claude.

A teacher answers `Request`s and, before it yields an answer, hands it to the `Journal` (the
ledger), so an answer is on disk before anything else happens to it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from omegaconf import DictConfig

from distill.config import TeacherConfig
from distill.registry import Registry

Messages = list[dict[str, str]]


@dataclass
class Answer:
    """One teacher answer with its token usage and cost."""

    text: str
    usage: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0


@dataclass(frozen=True)
class Request:
    """One prompt to answer: its stable record id, the chat messages and the output cap."""

    id: str
    messages: Messages
    max_tokens: int


@dataclass(frozen=True)
class Failure:
    """A request that got no answer: the error class (see `distill.teachers.retry`) and why."""

    kind: str
    message: str
    permanent: bool = False


class Journal(Protocol):
    """Where a teacher records what it pays for, durably, as it happens
    (`distill.data.generation.ledger`)."""

    def sent(self, rid: str, reserve_usd: float) -> None:
        """`rid` is about to go out (in flight until answered or failed)."""

    def answered(self, rid: str, answer: Answer) -> None:
        """An answer arrived: stored durably before the caller sees it."""

    def failed(self, rid: str, failure: Failure) -> None:
        """No answer for `rid` in this run."""

    def maybe_billed(self, rid: str, usd: float) -> None:
        """An attempt failed after the API may have billed it (a timeout, a dropped answer)."""

    def batch_submitting(self, rids: list[str], reserve_usd: float) -> str:
        """A Message Batch is about to be created; returns a token for `batch_created`."""

    def batch_created(self, batch_id: str, rids: list[str], reserve_usd: float, token: str) -> None:
        """The batch exists: from now on a restart polls it instead of resubmitting."""

    def batch_ended(self, batch_id: str) -> None:
        """Every result of the batch was journaled."""

    def submit_abandoned(self, token: str) -> None:
        """No batch was created for the submission `token` (its requests go out again)."""

    def open_batches(self) -> dict[str, tuple[list[str], float]]:
        """Batches created but not ended: id -> (request ids, reserved USD)."""

    def unconfirmed_submits(self) -> list[dict[str, Any]]:
        """Batch submissions whose batch id never reached the journal (a crash in between)."""


# What a teacher can give: `text` answers; white-box teachers also the logits, hidden states and
# attention maps of their model on the student's token ids (the logit, feature and attention
# losses, the teacher cache).
CAPABILITIES = ("text", "logits", "hidden_states", "attentions")


class Teacher(Protocol):
    """Answers prompts; declares what else it can give and carries its own config schema."""

    Config: ClassVar[type[TeacherConfig]]  # its schema, extending the shared TeacherConfig
    capabilities: ClassVar[frozenset[str]]  # a subset of CAPABILITIES
    name: str
    max_tokens: int  # per answer unless a request says otherwise

    @classmethod
    def from_config(cls, cfg: DictConfig, hardware: DictConfig | None = None) -> Teacher:
        """Build from the `teacher` config group; `hardware` places a local model."""
        ...

    @classmethod
    def problems(cls, cfg: DictConfig) -> Iterable[str]:
        """What must be fixed in the run's environment before anything is sent or paid for
        (checked by `distill.checks` with the rest of the config, before any weights load)."""
        ...

    def settings(self, max_tokens: int | None = None) -> dict[str, Any]:
        """Everything that changes an answer besides the prompt (part of each record's id), for
        a request capped at `max_tokens` (None: the teacher's default)."""
        ...

    def answer(self, requests: list[Request], journal: Journal) -> Iterator[tuple[str, Any]]:
        """Yield (request id, `Answer` or `Failure`) as soon as each exists, journaled first."""
        ...


# `teacher.kind` names the registered class; installed packages add teachers through the
# `distill.teachers` entry-point group.
TEACHERS: Registry[Teacher] = Registry("teacher", "distill.teachers")
register_teacher = TEACHERS.register


def build_teacher(cfg: DictConfig, hardware: DictConfig | None = None) -> Teacher:
    """The teacher registered under `teacher.kind`, built from its config group; a local one
    runs where `hardware` says (the CPU without it)."""
    return TEACHERS.get(cfg.kind).from_config(cfg, hardware)


def capabilities(cfg: DictConfig) -> frozenset[str]:
    """What the teacher of the `teacher` config group can give (see CAPABILITIES)."""
    return TEACHERS.get(cfg.kind).capabilities


def gives_logits(cfg: DictConfig) -> bool:
    """A white-box teacher: logits (and hidden states, attentions) on the student's tokens."""
    return "logits" in capabilities(cfg)
