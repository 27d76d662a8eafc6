"""`DistillationModule`: wires a student, an optional white-box teacher and a composite loss.

It owns no loss logic: a new objective is a new registered component, never a subclass of this.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from distill.evaluation.heldout import answer_token_scores
from distill.losses import CompositeLoss, StepOutputs
from distill.losses.composite import LAYER_OUTPUTS, LossResult
from distill.losses.layer_map import text_config
from distill.training.capture import can_record, record_layers
from distill.training.on_policy import OnPolicy, decode_samples

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf: the message names the step and the component."""


class DistillationModule(L.LightningModule):
    """One distillation step: teacher forward (no grad), student forward, composite loss.

    Args:
        student: the trainable model (LoRA adapters on a frozen, possibly 4-bit base).
        teacher: a frozen white-box teacher, or None when the loss needs none.
        loss: the composite of active components.
        optimizer: a partial taking the trainable parameters.
        scheduler: a partial taking the optimizer, stepped once per optimizer step; or None.
        teacher_cache: whether batches carry the teacher's signal from a sparse logit cache.
        on_policy: when and how batches are re-answered by the student (GKD), or None.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module | None,
        loss: CompositeLoss,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[[torch.optim.Optimizer], Any] | None = None,
        teacher_cache: bool = False,
        on_policy: OnPolicy | None = None,
    ) -> None:
        super().__init__()
        if loss.needs_white_box and teacher is None and not teacher_cache:
            raise ValueError("the active losses need a white-box teacher but none was given")
        self.student, self.loss = student, loss
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        # Kept out of the module tree: the frozen teacher is neither trained nor checkpointed.
        self._teacher = [teacher] if teacher is not None else []
        self.teacher_cache, self.on_policy = teacher_cache, on_policy
        # Checkpoints hold only trainable weights: the frozen base is absent on purpose, and
        # on_load_checkpoint checks that every trainable weight is there instead.
        self.strict_loading = False

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher[0] if self._teacher else None

    def forward_outputs(self, batch: dict[str, Any], need_teacher: bool) -> StepOutputs:
        """Run the forward passes that the active components require."""
        teacher = self.teacher if need_teacher else None
        if "teacher_sparse" in batch and self.loss.needs_white_box:
            teacher = None  # the cache stands in for the online teacher's logits
        dense = self.loss.needs_dense_logits
        layers = None
        if self.loss.requires & LAYER_OUTPUTS:  # record only the layers the losses read
            layers = self.loss.layers_read(depth(self.student), depth(teacher) if teacher else 0)
        return step_outputs(
            self.student, teacher, batch, self.loss.requires, dense_logits=dense, layers=layers
        )

    def on_fit_start(self) -> None:
        # from_pretrained returns eval mode and Lightning keeps the mode it is given: without this,
        # LoRA dropout and gradient checkpointing (both gated on `training`) would stay off.
        self.student.train()
        if self.teacher is not None:  # outside the module tree, so Lightning does not move it
            self.teacher.to(self.device)

    def global_loss_tokens(self, batch: dict[str, Any]) -> Tensor | None:
        """Scored tokens of the whole optimizer step (all micro-batches, all ranks) per share.

        Lightning divides each micro-batch loss by the accumulation steps and DDP averages the
        ranks' gradients, so dividing token sums by this gives the exact mean of the global batch.
        """
        if "group_tokens" not in batch:
            return None
        tokens = batch["group_tokens"].to(self.device, torch.float32)
        shares = self.trainer.accumulate_grad_batches * self.trainer.world_size
        if self.trainer.world_size > 1:
            tokens = self.trainer.strategy.reduce(tokens, reduce_op="sum")
        return tokens.clamp(min=1.0) / shares

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        step, max_steps = self.trainer.global_step, self.trainer.max_steps
        self.loss.set_step(step, max_steps)
        logging_step = step % self.trainer.log_every_n_steps == 0
        sampled = self.on_policy is not None and self.on_policy.chosen(step, max_steps, batch_idx)
        if sampled:
            batch = self.on_policy_batch(batch, step, logging_step)
        else:
            batch = dict(batch, loss_tokens=self.global_loss_tokens(batch))
        out = self.forward_outputs(batch, need_teacher=self.loss.needs_white_box or sampled)
        result = self.loss(out, batch, diagnostics=logging_step, teacher_scored_only=sampled)
        self.check_finite(result, step)
        logs = self.loss.log_values(result)
        if self.on_policy is not None:
            logs["train/on_policy/sampled"] = float(sampled)
            logs["train/on_policy/lmbda"] = self.on_policy.fraction(step, max_steps)
        self.log_dict(logs, batch_size=batch["input_ids"].shape[0])
        self.log("loss", result.total, prog_bar=True, logger=False)
        return result.total

    def check_finite(self, result: LossResult, step: int) -> None:
        """Stop the run on a NaN or inf loss, naming the step and the component(s) behind it."""
        finite = bool(torch.isfinite(result.total.detach()))
        if self.trainer.world_size > 1:  # every rank stops together, or the others would hang
            finite = self.trainer.strategy.reduce_boolean_decision(finite, all=True)
        if finite:
            return
        bad = {n: float(v) for n, v in result.parts.items() if not torch.isfinite(v.detach())}
        where = (
            ", ".join(f"loss.components.{n} = {v}" for n, v in bad.items())
            or f"the weighted sum (parts finite; weights {result.weights})"
        )
        raise NonFiniteLossError(
            f"the training loss is {float(result.total.detach())} at optimizer step {step} (rank "
            f"{self.global_rank}); it came from {where}. Lower train.optimizer.lr, check the "
            "component's temperature, or keep hardware.precision=32-true to rule out overflow"
        )

    def on_policy_batch(self, batch: dict[str, Any], step: int, log_it: bool) -> dict[str, Any]:
        """The student's own answers to the batch's prompts, to be scored by the teacher.

        Its token count is known only now, so it is normalised by its own scored tokens (a
        micro-batch mean) rather than by the count of the whole accumulation group.
        """
        sampled = self.on_policy.sample(self.student, batch, step)
        if log_it and self.on_policy.tokenizer is not None and self.on_policy.log_samples:
            for sample in decode_samples(
                sampled, self.on_policy.tokenizer, self.on_policy.log_samples
            ):
                log.info("on-policy sample at step %d: %r", step, sample["response"][:300])
        return sampled

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        out = self.forward_outputs(batch, need_teacher=self.teacher is not None)
        result = self.loss(out, batch)
        self.log(
            "val/loss/total", result.total, prog_bar=True, batch_size=batch["input_ids"].shape[0]
        )
        logits = out.dense_student_logits()
        sparse = out.teacher_sparse
        top1 = sparse.ids[..., 0] if sparse is not None and sparse.kind == "topk" else None
        scores = answer_token_scores(logits, out.teacher_logits, batch["labels"], top1)
        tokens = int(scores.pop("tokens"))  # weighting by tokens makes the epoch mean per token
        self.log_dict({f"val/{k}": v for k, v in scores.items()}, prog_bar=True, batch_size=tokens)

    def configure_optimizers(self) -> Any:
        trainable = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(trainable)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = {"scheduler": self.scheduler_factory(optimizer), "interval": "step"}
        return {"optimizer": optimizer, "lr_scheduler": scheduler}

    def checkpoint_keys(self) -> set[str]:
        """What a checkpoint holds: trainable weights (adapters, projections), loss buffers."""
        keep = {n for n, p in self.named_parameters() if p.requires_grad}
        return keep | {f"loss.{n}" for n, _ in self.loss.named_buffers()}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only trainable weights (adapters, projections) and the schedules' step."""
        keep = self.checkpoint_keys()
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Loading is non-strict (the frozen base is not saved): check the trainable part."""
        saved, expected = set(checkpoint["state_dict"]), self.checkpoint_keys()
        missing, unknown = sorted(expected - saved), sorted(saved - expected)
        if missing or unknown:
            raise RuntimeError(
                f"the checkpoint does not fit this model: {len(missing)} trainable weight(s) "
                f"missing (e.g. {missing[:3]}), {len(unknown)} unknown (e.g. {unknown[:3]}); "
                "resume with the student, LoRA and loss settings of the run that wrote it"
            )


def depth(model: nn.Module) -> int:
    """The number of decoder layers of a (PEFT-wrapped) Hugging Face model."""
    return text_config(model.config).num_hidden_layers


def split_head(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(decoder, lm_head) of a causal LM, looking through a PEFT wrapper (LoRA stays injected)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = base.get_output_embeddings()
    if hasattr(head, "lora_A"):
        raise ValueError(
            "the student's lm_head carries a LoRA adapter, which the chunked token losses would "
            "miss (they read the head's weight); remove lm_head from student.lora.target_modules"
        )
    return base.get_decoder(), head


def step_outputs(
    student: nn.Module,
    teacher: nn.Module | None,
    batch: dict[str, Any],
    needs: frozenset[str],
    dense_logits: bool = True,
    layers: Mapping[str, Collection[int]] | None = None,
) -> StepOutputs:
    """Teacher forward (no grad, when given) and student forward, asking only for `needs`.

    Args:
        student: the model being trained.
        teacher: the frozen white-box teacher, or None.
        batch: `input_ids` and `attention_mask` of shape (B, T); `teacher_sparse` when the
            teacher's signal comes from a logit cache.
        needs: the union of the active components' `requires`.
        dense_logits: also compute (B, T, V) student logits; without them the student's last
            hidden state and lm_head are handed over and token losses project chunk by chunk.
        layers: for each layer-wise output in `needs` (`CompositeLoss.layers_read`), the layers
            to record; the others are not kept (`distill.training.capture`). None: every layer.
    """
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    inputs["use_cache"] = False  # a KV cache is dead weight in a training step (1 GiB at 7B x 2048)
    out = StepOutputs(teacher_sparse=batch.get("teacher_sparse"))
    if teacher is not None:
        # no_grad, not inference_mode: components may save teacher tensors for their backward.
        with torch.no_grad():
            t, out.teacher_hidden_states, out.teacher_attentions = _forward(
                teacher, inputs, needs, layers, "teacher_"
            )
        out.teacher_logits = t.logits
    decoder, out.student_head = split_head(student)
    s, out.student_hidden_states, out.student_attentions = _forward(
        decoder, inputs, needs, layers, "", decoder
    )
    out.student_hidden = s.last_hidden_state
    if dense_logits:
        out.dense_student_logits()
    if "second_pass" in needs:  # another dropout draw of the same batch (consistency losses)
        out.student_second_logits = student(**inputs).logits
    return out


def _decoder(model: nn.Module) -> nn.Module:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base.get_decoder()


def _forward(
    model: nn.Module,
    inputs: dict[str, Any],
    needs: frozenset[str],
    layers: Mapping[str, Collection[int]] | None,
    prefix: str,
    decoder: nn.Module | None = None,
) -> tuple[Any, tuple | None, tuple | None]:
    """(output, hidden states, attentions) of one model: the hidden states and maps of just the
    chosen layers when `layers` is given and its decoder (`model`'s own unless given) supports
    it, else every layer's."""
    hidden_key, attn_key = prefix + "hidden_states", prefix + "attentions"
    want_hidden, want_attn = hidden_key in needs, attn_key in needs
    recordable = layers is not None and (want_hidden or want_attn)
    decoder = (decoder or _decoder(model)) if recordable else None
    if decoder is None or not can_record(decoder):
        output = model(**inputs, output_hidden_states=want_hidden, output_attentions=want_attn)
        return output, output.hidden_states, output.attentions
    hidden_layers = layers.get(hidden_key, ()) if want_hidden else ()
    attn_layers = layers.get(attn_key, ()) if want_attn else ()
    with record_layers(decoder, hidden_layers, attn_layers) as recording:
        output = model(**inputs)
    hidden = recording.hidden_states() if want_hidden else None
    return output, hidden, recording.attentions() if want_attn else None
