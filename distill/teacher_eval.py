"""`distill eval eval.model=teacher` for a text-only teacher (Claude, a served model): the
benchmark's chat messages go through the teacher's own client, with its rate limits, batches,
prompt caching, cost tracking and budget, and every paid answer is journaled in a ledger beside
the samples, so a rerun pays for nothing twice. Scoring is the same as for any model: the ceiling
a study shows beside the student.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from distill.data.generation.ledger import Ledger
from distill.data.store import record_id
from distill.errors import UserError
from distill.evaluation.app import run_eval as run_eval_stage
from distill.evaluation.samples import eval_files
from distill.runs import update_metrics
from distill.teachers import Failure, Request, build_teacher, gives_logits

log = logging.getLogger(__name__)


class TeacherChatModel:
    """A text-only teacher as a :class:`~distill.evaluation.harness.ChatModel`.

    Args:
        teacher: A built teacher (``distill.teachers``).
        ledger: Where each paid answer is journaled before it is used.
    """

    def __init__(self, teacher: Any, ledger: Ledger) -> None:
        self.teacher, self.ledger = teacher, ledger

    def fingerprint(self) -> str:
        settings = json.dumps(self.teacher.settings(), sort_keys=True, default=str)
        return f"api:{self.teacher.name}:{settings}"

    def chat_batches(
        self, messages: list[str], max_tokens: int
    ) -> Iterator[tuple[list[int], list[str]]]:
        settings = self.teacher.settings(max_tokens)
        requests, where = [], {}
        for i, text in enumerate(messages):
            conversation = [{"role": "user", "content": text}]
            rid = record_id(conversation, self.teacher.name, settings)
            if (paid := self.ledger.answer_for(rid)) is not None:  # answered before a crash
                yield [i], [paid.text]
            elif rid not in where:
                where[rid] = i
                requests.append(Request(rid, conversation, max_tokens))
        failed = 0
        for rid, outcome in self.teacher.answer(requests, self.ledger):
            if isinstance(outcome, Failure):
                failed += 1
                log.warning("%s: no answer (%s: %s)", rid, outcome.kind, outcome.message)
                continue
            yield [where[rid]], [outcome.text]
        log.info(
            "%s: %d requests, %d failed, $%.4f paid in all (ledger %s)",
            self.teacher.name, len(requests), failed, self.ledger.paid_usd, self.ledger.path,
        )  # fmt: skip


def run_eval(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """`distill eval`: a text-only teacher goes through :class:`TeacherChatModel`; everything
    else (the student, a white-box teacher, a samples file) through the evaluation stage."""
    api = cfg.eval.model == "teacher" and not cfg.eval.samples and not gives_logits(cfg.teacher)
    if not api:
        return run_eval_stage(cfg, run_dir)
    if cfg.eval.prompt_format != "chat" or cfg.eval.num_samples != 1:
        raise UserError(
            f"teacher={cfg.teacher.name} answers chat messages, one answer each: set "
            "eval.prompt_format=chat and eval.num_samples=1"
        )
    files = eval_files(Path(run_dir) / "eval", "teacher", cfg.eval.benchmark)
    files.samples.parent.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(files.samples.with_name(files.samples.name.replace("_samples", "_ledger")))
    try:
        model = TeacherChatModel(build_teacher(cfg.teacher), ledger)
        metrics = run_eval_stage(cfg, run_dir, loaded=(model, None, "teacher"))
    finally:
        ledger.close()
    cost = {f"eval/{cfg.eval.benchmark}/teacher_cost_usd": ledger.paid_usd}
    return update_metrics(run_dir, {**metrics, **cost})
