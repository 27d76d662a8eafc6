"""Data parallelism on CPU: two DDP processes (gloo) train exactly like one process that
accumulates the same two micro-batches per step (same global batch, same token normalisation).

This file is also the worker: `python -m tests.training.test_ddp OUT OVERRIDES...` trains the
tiny models through `build_training` and saves each rank's per-batch losses and LoRA weights.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
COMMON = [
    "experiment=tiny_smoke",
    "~logger",
    "data.batch_size=4",  # the global batch
    "hardware.micro_batch_size=2",
    "train.max_steps=3",
    "train.checkpoint_every_n_steps=0",
    "student.lora.dropout=0.0",  # dropout masks would differ between rank layouts
    # SGD: Adam's first steps are sign-like, so float noise in near-zero gradients (a sum in a
    # different order) would move weights by a whole step; SGD keeps the comparison sharp.
    "train.optimizer._target_=torch.optim.SGD",
    "train.optimizer.lr=0.5",
    "train.scheduler=null",
]


def worker(out_dir: Path, overrides: list[str]) -> None:
    import lightning as L

    from distill.training.app import build_training
    from tests.conftest import compose_config

    class Record(L.Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []
            self.tokens: list[int] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            self.tokens.append(int((batch["labels"][:, 1:] != -100).sum()))

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            self.losses.append(float(outputs["loss"]))

    cfg = compose_config("train", [*COMMON, *overrides])
    setup = build_training(cfg, out_dir / "run")
    start = {n: p.detach().clone() for n, p in setup.module.named_parameters() if p.requires_grad}
    record = Record()
    setup.trainer.callbacks.append(record)
    setup.trainer.fit(setup.module, datamodule=setup.datamodule)
    lora = {n: p.detach() for n, p in setup.module.named_parameters() if p.requires_grad}
    trainer = setup.trainer
    result = {
        "losses": record.losses,
        "tokens": record.tokens,
        "lora": lora,
        "start": start,
        "accumulate": trainer.accumulate_grad_batches,
        "world_size": trainer.world_size,
        "steps": trainer.global_step,
    }
    torch.save(result, out_dir / f"rank{trainer.global_rank}.pt")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(out_dir: Path, dataset: Path, processes: int, *overrides: str) -> None:
    out_dir.mkdir(parents=True)
    module = ["-m", "tests.training.test_ddp", str(out_dir), f"data.dataset={dataset}", *overrides]
    if processes > 1:
        launcher = [
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={processes}",
            "--master_addr=127.0.0.1",
            f"--master_port={free_port()}",
        ]
        module = [*launcher, *module]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    out = subprocess.run(
        [sys.executable, *module], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-4000:]


def test_each_rank_takes_every_other_batch_with_its_group_token_count():
    from distill.data.batching.sampling import GroupTokenBatches, LengthGroupedSampler

    lengths = [5, 9, 3, 7, 8, 2, 6, 4, 1, 10, 11]  # 11 examples -> 6 batches of 2
    scored = list(range(1, 12))
    epoch = list(LengthGroupedSampler(lengths, batch_size=2, seed=3))
    ranks = [
        list(GroupTokenBatches(LengthGroupedSampler(lengths, 2, 3), scored, 2, r, 2))
        for r in (0, 1)
    ]
    assert [len(r) for r in ranks] == [3, 3]  # the same count on every rank
    assert [[i for i, _ in b] for b in ranks[0]] == epoch[0:6:2]
    assert [[i for i, _ in b] for b in ranks[1]] == epoch[1:6:2]
    group = sum(scored[i] for b in epoch[0:4:2] for i in b)  # rank 0's first two micro-batches
    assert {t for b in ranks[0][:2] for _, t in b} == {group}


def test_a_resumed_epoch_skips_what_was_trained_and_keeps_the_group_counts():
    from distill.data.batching.sampling import GroupTokenBatches, LengthGroupedSampler

    lengths, scored = list(range(1, 13)), [3] * 12
    full = GroupTokenBatches(LengthGroupedSampler(lengths, 2, 0), scored, 4)
    epoch0, epoch1 = list(full), list(full)
    resumed = GroupTokenBatches(LengthGroupedSampler(lengths, 2, 0), scored, 4)
    resumed.skip_batches(3)
    assert list(resumed) == epoch0[3:]  # batch 3 still carries the count of its whole group
    assert list(resumed) == epoch1  # the skip applies to one epoch only


@pytest.mark.parametrize(
    ("overrides", "split"),
    [
        ({}, (4, 1, 1)),
        ({"micro_batch_size": 1}, (1, 4, 1)),
        ({"devices": 2, "micro_batch_size": 1}, (1, 2, 2)),
        ({"devices": 2, "num_nodes": 2}, (1, 1, 4)),
    ],
)
def test_the_global_batch_is_the_same_on_every_preset(overrides, split):
    from omegaconf import OmegaConf

    from distill.hardware import batch_split

    hardware = OmegaConf.create(
        {"devices": 1, "num_nodes": 1, "micro_batch_size": None, **overrides}
    )
    got = batch_split(hardware, 4)
    assert (got.micro, got.accumulate, got.replicas) == split and got.global_batch == 4


def test_a_global_batch_that_does_not_split_names_both_settings():
    from omegaconf import OmegaConf

    from distill.errors import UserError
    from distill.hardware import batch_split

    hardware = OmegaConf.create({"devices": 2, "num_nodes": 1, "micro_batch_size": 3})
    with pytest.raises(UserError, match=r"data.batch_size=8 .* hardware.micro_batch_size=3"):
        batch_split(hardware, 8)


@pytest.mark.slow
def test_two_ddp_processes_match_one_process_accumulating(tmp_path):
    from distill.testing import tiny_model_dir
    from tests.training.test_resume import write_tiny_dataset

    # Building a tiny model reseeds torch's global RNG (distill.testing.tiny_llama); build both
    # into the shared cache first, so every process below loads them and draws the same LoRA init.
    tiny_model_dir("teacher"), tiny_model_dir("student")
    dataset = write_tiny_dataset(tmp_path / "data.jsonl")
    launch(tmp_path / "one", dataset, 1, "hardware=cpu")
    ddp = ["hardware=ddp", "hardware.accelerator=cpu", "hardware.precision=32-true"]
    launch(tmp_path / "two", dataset, 2, *ddp)

    one = torch.load(tmp_path / "one/rank0.pt")
    ranks = [torch.load(tmp_path / f"two/rank{r}.pt") for r in (0, 1)]
    assert (one["accumulate"], one["world_size"]) == (2, 1)  # global 4 = 2 x 2 accumulated
    assert all((r["accumulate"], r["world_size"]) == (1, 2) for r in ranks)  # = 2 x 2 ranks
    assert one["steps"] == ranks[0]["steps"] == ranks[1]["steps"] == 3
    for name, weight in one["start"].items():  # the same start everywhere
        assert torch.equal(ranks[0]["start"][name], weight), name
    # Step k of the ranks saw micro-batches 2k (rank 0) and 2k+1 (rank 1) of the single process.
    interleaved = [
        t for pair in zip(ranks[0]["tokens"], ranks[1]["tokens"], strict=True) for t in pair
    ]
    assert interleaved == one["tokens"]
    assert ranks[0]["tokens"] != ranks[1]["tokens"]  # the ranks took different data
    # Each micro-batch's loss is its token sum over the step's global tokens (times the shares):
    # the same number whether the two micro-batches of a step are accumulated or on two ranks.
    # (Lightning reports an accumulated micro-batch's loss divided by the accumulation steps.)
    together = [
        x for pair in zip(ranks[0]["losses"], ranks[1]["losses"], strict=True) for x in pair
    ]
    assert together == pytest.approx([x * 2 for x in one["losses"]], rel=1e-4)
    for name, weight in one["lora"].items():
        torch.testing.assert_close(ranks[0]["lora"][name], weight, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(ranks[1]["lora"][name], weight, rtol=1e-4, atol=1e-6)


if __name__ == "__main__":
    worker(Path(sys.argv[1]), sys.argv[2:])
