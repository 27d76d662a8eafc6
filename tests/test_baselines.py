"""The baseline-score key: it changes with everything that decides the scores, nothing else."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from distill.baselines import baseline_key, load_baselines, store_baselines

CFG = OmegaConf.create(
    {
        "teacher": {"path": "t"},
        "student": {"path": "s"},
        "eval": {"limit": 3},
        "hardware": {"precision": "32-true"},
        "loss": {"components": {"kl": {}}},
        "seed": 0,
    }
)
BATCHES = [{"input_ids": torch.arange(6).view(2, 3), "labels": torch.tensor([[-100, 1, 2]] * 2)}]


def test_the_key_follows_models_eval_and_heldout_data_but_not_the_loss_or_a_greedy_seed():
    student = torch.nn.Linear(2, 2)
    key = baseline_key(CFG, student, BATCHES)
    other_loss = OmegaConf.merge(CFG, {"loss": {"components": {"ce": {}}}})
    assert baseline_key(other_loss, student, BATCHES) == key
    for change in ({"eval": {"limit": 4}}, {"student": {"path": "s2"}}):
        assert baseline_key(OmegaConf.merge(CFG, change), student, BATCHES) != key, change
    # greedy scores do not depend on the seed; sampled ones do
    assert baseline_key(OmegaConf.merge(CFG, {"seed": 1}), student, BATCHES) == key
    sampled = OmegaConf.merge(CFG, {"eval": {"num_samples": 5}})
    sampled_key = baseline_key(sampled, student, BATCHES)
    assert baseline_key(OmegaConf.merge(sampled, {"seed": 1}), student, BATCHES) != sampled_key
    moved = [{**BATCHES[0], "labels": torch.tensor([[-100, -100, 2]] * 2)}]
    assert baseline_key(CFG, student, moved) != key


def test_rows_round_trip_and_a_torn_file_reads_as_absent(tmp_path):
    rows = {"teacher": {"ce": 0.5, "tokens": 12, "samples": [1, 2]}}
    path = store_baselines(tmp_path, "k", rows)
    assert load_baselines(tmp_path, "k") == {"teacher": {"ce": 0.5, "tokens": 12}}
    path.write_text('{"rows": ')
    assert load_baselines(tmp_path, "k") is None
    assert load_baselines(tmp_path, "missing") is None
