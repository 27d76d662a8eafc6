"""`DistillationModule`: wires a student, an optional white-box teacher and a composite loss.

It owns no loss logic: a new objective is a new registered component, never a subclass of this.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from distill.losses import CompositeLoss, StepOutputs
from distill.training.heldout import answer_token_scores


class DistillationModule(L.LightningModule):
    """One distillation step: teacher forward (no grad), student forward, composite loss.

    Args:
        student: the trainable model (LoRA adapters on a frozen, possibly 4-bit base).
        teacher: a frozen white-box teacher, or None when the loss needs none.
        loss: the composite of active components.
        optimizer: a partial taking the trainable parameters.
        scheduler: a partial taking the optimizer, stepped once per optimizer step; or None.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        loss: CompositeLoss,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
    ) -> None:
        super().__init__()
        if loss.needs_white_box and teacher is None:
            raise ValueError("the active losses need a white-box teacher but none was given")
        self.student, self.loss = student, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        # Kept out of the module tree: the frozen teacher is neither trained nor checkpointed.
        self._teacher = [teacher] if teacher is not None else []

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0] if self._teacher else None

    def forward_outputs(self, batch: dict[str, Tensor], need_teacher: bool) -> StepOutputs:
        """Run the forward passes that the active components require."""
        teacher = self.teacher if need_teacher else None
        return step_outputs(self.student, teacher, batch, self.loss.requires)

    def on_fit_start(self) -> None:
        # from_pretrained returns eval mode and Lightning keeps the mode it is given: without this,
        # LoRA dropout and gradient checkpointing (both gated on `training`) would stay off.
        self.student.train()
        if self.teacher is not None:  # outside the module tree, so Lightning does not move it
            self.teacher.to(self.device)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        out = self.forward_outputs(batch, need_teacher=self.loss.needs_white_box)
        total, parts = self.loss(out, batch)
        logs = {"train/loss/total": total}
        for name, value in parts.items():
            logs[f"train/loss/{name}"] = value
            logs[f"train/weight/{name}"] = self.loss.weights[name]
        self.log_dict(logs, prog_bar=False, batch_size=batch["input_ids"].shape[0])
        self.log("loss", total, prog_bar=True, logger=False)
        return total

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        out = self.forward_outputs(batch, need_teacher=self.teacher is not None)
        total, _ = self.loss(out, batch)
        self.log("val/loss/total", total, prog_bar=True, batch_size=batch["input_ids"].shape[0])
        scores = answer_token_scores(out.student_logits, out.teacher_logits, batch["labels"])
        tokens = int(scores.pop("tokens"))  # weighting by tokens makes the epoch mean per token
        self.log_dict({f"val/{k}": v for k, v in scores.items()}, prog_bar=True, batch_size=tokens)

    def configure_optimizers(self) -> Any:
        trainable = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(trainable)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only trainable weights (adapters, projections), never the frozen base."""
        keep = {n for n, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}


def step_outputs(
    student: nn.Module, teacher: nn.Module | None, batch: dict[str, Tensor], needs: frozenset[str]
) -> StepOutputs:
    """Teacher forward (no grad, when given) and student forward, asking only for `needs`.

    Args:
        student: the model being trained.
        teacher: the frozen white-box teacher, or None.
        batch: `input_ids` and `attention_mask` of shape (B, T).
        needs: the union of the active components' `requires`.
    """
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    out = StepOutputs(student_logits=None)  # type: ignore[arg-type]
    if teacher is not None:
        with torch.no_grad():
            t = teacher(
                **inputs,
                output_hidden_states="teacher_hidden_states" in needs,
                output_attentions="teacher_attentions" in needs,
            )
        out.teacher_logits, out.teacher_hidden_states = t.logits, t.hidden_states
        out.teacher_attentions = t.attentions
    s = student(
        **inputs,
        output_hidden_states="hidden_states" in needs,
        output_attentions="attentions" in needs,
    )
    out.student_logits, out.student_hidden_states = s.logits, s.hidden_states
    out.student_attentions = s.attentions
    return out
