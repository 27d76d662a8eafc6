"""The KD-loss benchmark measures distill's own chunked pass, and it computes what it claims."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

METHODS = (
    Path(__file__).resolve().parents[2] / "experiments" / "performance" / "kd_loss" / "methods.py"
)


@pytest.fixture(scope="module")
def methods():
    spec = importlib.util.spec_from_file_location("kd_loss_methods", METHODS)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("head", ["frozen", "trainable"])
def test_ours_is_mean_forward_kl_with_dense_gradients(methods, head):
    cfg = methods.Config(seq=9, dtype="fp32", head=head, vocab=40, hidden=16, teacher_hidden=8)
    x = methods.make_inputs(cfg)
    value = methods.ours(x, chunk_size=4)  # three chunks, the last one short
    value.backward()
    grads = x.hidden.grad.clone(), None if x.weight.grad is None else x.weight.grad.clone()
    ref = methods.upcast(x)
    hidden, weight = ref.hidden.double().detach(), ref.weight.double().detach()
    hidden.requires_grad_(True)
    weight.requires_grad_(head == "trainable")
    q = torch.log_softmax(hidden @ weight.T, -1)
    p = torch.log_softmax(ref.teacher_logits.double(), -1)
    want = (p.exp() * (p - q)).sum(-1).mean()
    want.backward()
    assert value.item() == pytest.approx(want.item(), rel=1e-5)
    torch.testing.assert_close(grads[0].double(), hidden.grad, rtol=1e-4, atol=1e-7)
    if head == "trainable":
        torch.testing.assert_close(grads[1].double(), weight.grad, rtol=1e-4, atol=1e-7)
    else:
        assert grads[1] is None
