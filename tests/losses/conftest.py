"""What the layer-wise loss tests share: tiny models of several widths and head counts, run
eagerly (SDPA returns no attention maps), and their step outputs as the trainer builds them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from distill.losses import StepOutputs
from distill.testing import tiny_llama

CONF = Path(__file__).resolve().parents[2] / "conf" / "loss"


def eager(model: LlamaForCausalLM) -> LlamaForCausalLM:
    model.set_attn_implementation("eager")  # SDPA returns no attention maps
    return model


def heads8_teacher() -> LlamaForCausalLM:
    """4 layers, width 64, 8 attention heads (tiny_llama has 4)."""
    config = LlamaConfig(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        initializer_range=0.5,
    )
    torch.manual_seed(3)
    return eager(LlamaForCausalLM(config).eval())


@pytest.fixture(scope="module")
def models() -> dict[str, LlamaForCausalLM]:
    return {
        "student": eager(tiny_llama(2, seed=2, hidden_size=32)),  # 2 layers, width 32, 4 heads
        "teacher": eager(tiny_llama(4, seed=1, hidden_size=32)),  # same width, deeper
        "wide": eager(tiny_llama(4, seed=1, hidden_size=64)),  # other width
        "heads8": heads8_teacher(),  # other width and head count
    }


def step(student, teacher, batch) -> StepOutputs:
    """StepOutputs as the trainer builds them: teacher under no_grad, all layer outputs."""
    kwargs = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "output_hidden_states": True,
        "output_attentions": True,
    }
    student.zero_grad(set_to_none=True)
    s = student(**kwargs)
    with torch.no_grad():
        t = teacher(**kwargs)
    return StepOutputs(
        student_logits=s.logits,
        teacher_logits=t.logits,
        student_hidden_states=s.hidden_states,
        teacher_hidden_states=t.hidden_states,
        student_attentions=s.attentions,
        teacher_attentions=t.attentions,
    )


def unscored(labels: torch.Tensor) -> torch.Tensor:
    """(B, T) True at positions whose output is not scored: label t+1 is -100, or t is last."""
    mask = torch.ones_like(labels, dtype=torch.bool)
    mask[:, :-1] = labels[:, 1:] == -100
    return mask
