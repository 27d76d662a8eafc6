"""Resume: a run killed mid-epoch and resumed from its last checkpoint ends where the
uninterrupted run ends; checkpoints hold only trainable weights; a NaN loss stops the run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import lightning as L
import pytest
import torch

from distill.errors import UserError
from distill.models import load_student, load_teacher
from distill.training.app import build_training, fit
from distill.training.checkpoints import last_checkpoint, resume_path
from distill.training.module import NonFiniteLossError
from tests.conftest import compose_config


def write_tiny_dataset(path: Path, records: int = 24, seed: int = 0) -> Path:
    """Short chat records (a prompt and a fenced answer) that fit the tiny models' context."""
    rng = random.Random(seed)
    with Path(path).open("w") as f:
        for i in range(records):
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            record = {
                "id": f"tiny-{seed}-{i}",
                "messages": [{"role": "user", "content": f"Write f{i}(x): return {a} + {b}x."}],
                "response": f"```python\ndef f{i}(x):\n    return {a} + {b} * x\n```",
                "difficulty": ("easy", "medium", "hard")[i % 3],
            }
            f.write(json.dumps(record) + "\n")
    return Path(path)


class Killed(Exception):
    pass


class KillAt(L.Callback):
    """Stands in for a crash: the process dies as optimizer step `step` starts."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            raise Killed  # nothing is saved on the way out: what survives is the last checkpoint


def train_cfg(dataset: Path, *extra: str):
    """8 steps on 18 training examples in batches of 4 (5 per epoch): checkpoints every 3 steps
    fall mid-epoch; LoRA dropout and a KL weight schedule make RNG and schedule state matter."""
    return compose_config(
        "train",
        [
            "experiment=tiny_smoke",
            f"data.dataset={dataset}",
            "train.max_steps=8",
            "train.checkpoint_every_n_steps=3",
            "student.lora.dropout=0.1",
            "+loss.components.kl.schedule={kind:linear,start:0.0,end:1.0}",
            "~logger",
            *extra,
        ],
    )


@pytest.fixture(scope="module", autouse=True)
def warm_model_loading():
    """Building a tiny model into the cache reseeds torch's global RNG (`tiny_llama`), so the
    first run of a process would draw other LoRA A matrices than the next, with the same seed;
    load once so that every run compared below loads from the cache."""
    cfg = compose_config("train", ["experiment=tiny_smoke"])
    load_teacher(cfg.teacher, "sdpa")
    load_student(cfg.student, "sdpa")


def run(cfg, run_dir: Path, kill_at: int | None = None):
    setup = build_training(cfg, run_dir)
    if kill_at is None:
        fit(setup, run_dir)
    else:
        setup.trainer.callbacks.append(KillAt(kill_at))
        with pytest.raises(Killed):
            setup.trainer.fit(setup.module, datamodule=setup.datamodule)
    lora = {n: p.detach().clone() for n, p in setup.module.named_parameters() if p.requires_grad}
    return setup.history.losses, lora, setup.trainer


@pytest.mark.parametrize("kill_at", [4, 7])  # mid-epoch 0 (after step 3), mid-epoch 1 (step 6)
def test_kill_and_resume_ends_where_the_uninterrupted_run_ends(tmp_path, kill_at):
    dataset = write_tiny_dataset(tmp_path / "data.jsonl")
    full_losses, full_lora, _ = run(train_cfg(dataset), tmp_path / "full")

    killed_dir = tmp_path / "killed"
    killed_losses, _, _ = run(train_cfg(dataset), killed_dir, kill_at=kill_at)
    saved = torch.load(last_checkpoint(killed_dir), weights_only=False)
    resumed_at = saved["global_step"]
    assert resumed_at == 3 * (kill_at // 3) and len(killed_losses) == kill_at
    losses, lora, trainer = run(train_cfg(dataset, "resume=true"), killed_dir)

    assert trainer.global_step == 8
    # The history comes back with the checkpoint: the killed run's steps, then the resumed ones.
    assert losses[:resumed_at] == killed_losses[:resumed_at]
    assert losses == pytest.approx(full_losses, rel=1e-5, abs=1e-6)
    for name, weight in full_lora.items():
        torch.testing.assert_close(lora[name], weight, rtol=1e-5, atol=1e-6)


def test_checkpoint_holds_only_trainable_weights_and_the_schedule_step(tmp_path):
    dataset = write_tiny_dataset(tmp_path / "data.jsonl")
    _, lora, _ = run(train_cfg(dataset), tmp_path / "run", kill_at=4)
    saved = torch.load(last_checkpoint(tmp_path / "run"), weights_only=False)
    state = saved["state_dict"]
    assert set(state) == set(lora) | {"loss.step"}
    assert all("lora_" in name for name in lora) and int(state["loss.step"]) == 2
    assert "rng_states" in saved and saved["optimizer_states"] and saved["lr_schedulers"]


def test_resume_from_a_checkpoint_of_another_model_names_the_missing_weights(tmp_path):
    dataset = write_tiny_dataset(tmp_path / "data.jsonl")
    run(train_cfg(dataset), tmp_path / "a", kill_at=4)
    ckpt = last_checkpoint(tmp_path / "a")
    other = train_cfg(
        dataset, "student.lora.target_modules=[q_proj,v_proj,up_proj]", f"resume={ckpt}"
    )
    setup = build_training(other, tmp_path / "b")
    with pytest.raises(RuntimeError, match=r"0 trainable weight\(s\) missing .* 16 unknown"):
        fit(setup, tmp_path / "b")


def test_resume_paths(tmp_path):
    assert resume_path(False, tmp_path) is None
    assert resume_path(True, tmp_path) is None  # nothing to resume yet: start from step 0
    with pytest.raises(UserError, match="resume=.*nope.ckpt: no such checkpoint"):
        resume_path(str(tmp_path / "nope.ckpt"), tmp_path)


class PoisonTeacher(L.Callback):
    """From step 2 on the teacher's logits are NaN: only the teacher-based component breaks."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == 2:
            with torch.no_grad():
                pl_module.teacher.get_output_embeddings().weight.fill_(float("nan"))


def test_a_nan_loss_stops_the_run_naming_step_and_component(tmp_path):
    dataset = write_tiny_dataset(tmp_path / "data.jsonl")
    setup = build_training(train_cfg(dataset), tmp_path / "run")
    setup.trainer.callbacks.append(PoisonTeacher())
    with pytest.raises(NonFiniteLossError) as info:
        fit(setup, tmp_path / "run")
    message = str(info.value)
    assert "optimizer step 2" in message and "loss.components.kl = nan" in message
    assert "loss.components.ce" not in message  # the CE on the stored answers stayed finite
    assert setup.trainer.global_step == 2  # stopped before the NaN reached the weights
