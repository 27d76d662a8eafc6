"""`DistillationModule` under a real Lightning Trainer, and the held-out scores."""

from __future__ import annotations

from functools import partial

import lightning as L
import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch.utils.data import DataLoader

from distill.evaluation.heldout import heldout_scores
from distill.losses import build_loss
from distill.testing import fake_batch, tiny_llama, tiny_tokenizer
from distill.training.module import DistillationModule


@pytest.fixture
def parts():
    teacher, tokenizer = tiny_llama(4, seed=1), tiny_tokenizer()
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    student = get_peft_model(tiny_llama(2, seed=2), lora)
    batches = [fake_batch(tokenizer, seed=s) for s in range(3)]
    return teacher.requires_grad_(False), student, batches


def make_module(student, teacher):
    loss = build_loss({"ce": {"weight": 0.5}, "kl": {"weight": 0.5}})
    return DistillationModule(student, teacher, loss, partial(torch.optim.AdamW, lr=1e-2))


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


class ModeProbe(L.Callback):
    """Records which student modules are in eval mode when a training batch starts."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.eval_modules = [n for n, m in pl_module.student.named_modules() if not m.training]
        self.teacher_training = pl_module.teacher.training


def test_one_step_trains_lora_only(parts):
    teacher, student, batches = parts
    module = make_module(student, teacher)
    before_student, before_teacher = snapshot(student), snapshot(teacher)
    probe = ModeProbe()
    trainer = L.Trainer(
        fast_dev_run=True,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[probe],
    )
    loader = DataLoader(batches, batch_size=None)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    # from_pretrained (like tiny_llama) returns eval mode; training must not keep LoRA dropout
    # and gradient checkpointing switched off, nor switch the teacher to train mode.
    assert probe.eval_modules == [] and probe.teacher_training is False
    after = snapshot(student)
    changed = {n for n in after if not torch.equal(after[n], before_student[n])}
    assert any("lora_B" in n for n in changed)
    assert changed and all("lora_" in n for n in changed)
    assert all(torch.equal(p, before_teacher[n]) for n, p in snapshot(teacher).items())
    metrics = trainer.callback_metrics
    for key in ("train/loss/total", "train/loss/ce", "train/loss/kl", "train/weight/kl"):
        assert torch.isfinite(metrics[key]), key
    total = 0.5 * metrics["train/loss/ce"] + 0.5 * metrics["train/loss/kl"]
    assert metrics["train/loss/total"].item() == pytest.approx(total.item(), rel=1e-5)
    assert 0 <= metrics["val/top1_agreement"].item() <= 1 and metrics["val/ce"] > 0


def test_checkpoint_keeps_only_trainable_weights(parts):
    teacher, student, _ = parts
    module = make_module(student, teacher)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert set(checkpoint["state_dict"]) == trainable | {"loss.step"}  # the schedules' step
    assert trainable and all("lora_" in k for k in trainable)
    assert len(module.state_dict()) > len(trainable)  # the frozen base was there to drop


def test_white_box_loss_without_a_teacher_raises(parts):
    _, student, _ = parts
    with pytest.raises(ValueError, match="need a white-box teacher"):
        make_module(student, None)
    ce_only = build_loss({"ce": {"weight": 1.0}})
    assert DistillationModule(student, None, ce_only, torch.optim.AdamW).teacher is None


def test_heldout_scores_against_itself(parts):
    teacher, _, batches = parts
    scores = heldout_scores(teacher, teacher, batches)
    assert scores["top1_agreement"] == 1.0
    ce_sum, tokens = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            logp = torch.log_softmax(
                teacher(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                ).logits.double(),
                dim=-1,
            )
            for b, t in (batch["labels"][:, 1:] != -100).nonzero().tolist():
                ce_sum -= logp[b, t, batch["labels"][b, t + 1]].item()
                tokens += 1
    assert scores["tokens"] == tokens
    assert scores["ce"] == pytest.approx(ce_sum / tokens, rel=1e-5)
    assert "top1_agreement" not in heldout_scores(teacher, None, batches)


def one_sgd_step(student, teacher, batches, accumulate: int) -> dict[str, torch.Tensor]:
    """The change of every trainable weight after one optimizer step over `batches`."""
    loss = build_loss({"ce": {"weight": 0.5}, "kl": {"weight": 0.5}})
    module = DistillationModule(student, teacher, loss, partial(torch.optim.SGD, lr=1.0))
    before = snapshot(student)
    trainer = L.Trainer(
        max_steps=1,
        accumulate_grad_batches=accumulate,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    after = snapshot(student)
    return {n: after[n] - before[n] for n, p in student.named_parameters() if p.requires_grad}


def with_group_tokens(batches: list[dict]) -> list[dict]:
    tokens = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
    return [dict(b, group_tokens=torch.tensor(tokens)) for b in batches]


def test_gradient_accumulation_gives_the_step_of_one_big_batch():
    """Two micro-batches of 2 rows with accumulation == one batch of 4 rows, exactly: token
    losses divide by the scored tokens of the whole accumulation group, not of each half."""
    tokenizer = tiny_tokenizer()
    full = fake_batch(tokenizer, batch_size=4, length=16)
    full["labels"][0, 6:] = -100  # the halves hold different numbers of scored tokens
    halves = [{k: v[rows] for k, v in full.items()} for rows in (slice(0, 2), slice(2, 4))]
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    teacher = tiny_llama(4, seed=1).requires_grad_(False)

    def student():
        torch.manual_seed(0)
        return get_peft_model(tiny_llama(2, seed=2), lora)

    big = one_sgd_step(student(), teacher, with_group_tokens([full]), accumulate=1)
    accumulated = one_sgd_step(student(), teacher, with_group_tokens(halves), accumulate=2)
    local_means = one_sgd_step(student(), teacher, halves, accumulate=2)
    assert any(d.abs().sum() > 0 for d in big.values())  # lora_B moves (lora_A waits: B=0)
    for name, delta in big.items():
        torch.testing.assert_close(accumulated[name], delta, rtol=1e-4, atol=1e-7)
    # Without the group count each half is its own mean: a different (biased) step.
    assert any(not torch.allclose(local_means[n], d, rtol=1e-3) for n, d in big.items())


def test_the_loss_own_weights_are_saved_beside_the_adapters(parts, tmp_path):
    """Projections, head mixing and adaptive weights are trained, so they are saved too."""
    from safetensors.torch import load_file

    from distill.training.callbacks import LOSS_STATE, AdapterSaver

    teacher, student, batches = parts
    loss = build_loss({"ce": {"weight": 0.5}, "kl": {"weight": 0.5}}, adaptive=True)
    module = DistillationModule(student, teacher, loss, partial(torch.optim.AdamW, lr=1e-2))
    trainer = L.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[AdapterSaver(tmp_path, tiny_tokenizer())],
    )
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    saved = load_file(tmp_path / LOSS_STATE)
    assert set(saved) == {"log_vars", "step"}
    torch.testing.assert_close(saved["log_vars"], loss.log_vars.detach())
    assert saved["log_vars"].abs().sum() > 0  # trained away from its zero start
    assert (tmp_path / "adapter_config.json").is_file()
