"""The layer-wise losses get their mapped layers' tensors only, and the same values and gradients
as from every layer's outputs."""

import pytest
import torch

from distill.losses import build_loss
from distill.testing import fake_batch, tiny_llama, tiny_tokenizer
from distill.training.capture import record_layers
from distill.training.module import depth, step_outputs


def eager(model):
    model.set_attn_implementation("eager")
    return model


def test_recorded_layers_are_the_ones_hugging_face_returns():
    model = eager(tiny_llama(num_layers=4))
    batch = fake_batch(tiny_tokenizer())
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    full = model(**inputs, output_hidden_states=True, output_attentions=True)
    with record_layers(model.model, hidden=[1, 3], attn=[2]) as rec:
        model(**inputs)
    hidden, attn = rec.hidden_states(), rec.attentions()
    assert [h is not None for h in hidden] == [False, False, True, False, True]
    assert [a is not None for a in attn] == [False, False, True, False]
    torch.testing.assert_close(hidden[2], full.hidden_states[2], rtol=0, atol=0)
    # the last layer's entry is after the final norm, as Hugging Face returns it
    torch.testing.assert_close(hidden[4], full.hidden_states[4], rtol=0, atol=0)
    torch.testing.assert_close(attn[2], full.attentions[2], rtol=0, atol=0)
    with record_layers(model.model, hidden=[0]) as later:
        pass
    model(**inputs)  # outside the block: the hooks are gone
    assert later.hidden == {}


def test_attention_maps_need_eager_attention():
    model = tiny_llama(num_layers=2)  # SDPA
    batch = fake_batch(tiny_tokenizer())
    with pytest.raises(ValueError, match="attn_implementation='eager'"):
        with record_layers(model.model, attn=[0]):
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


def outputs_and_grads(loss, layers, checkpointing: bool):
    teacher = eager(tiny_llama(num_layers=4, seed=1))
    student = eager(tiny_llama(num_layers=2, seed=2)).train()
    if checkpointing:
        student.gradient_checkpointing_enable({"use_reentrant": False})
    batch = fake_batch(tiny_tokenizer())
    out = step_outputs(student, teacher, batch, loss.requires, layers=layers)
    value = loss(out, batch).total
    value.backward()
    return out, value.detach(), [p.grad.clone() for p in student.parameters() if p.grad is not None]


@pytest.mark.parametrize("checkpointing", [False, True])
def test_layer_losses_read_only_mapped_layers_with_unchanged_values(checkpointing):
    components = {
        "attn_transfer": {"weight": 1.0, "layers": [[1, 2]]},
        "feature_match": {"weight": 1.0, "layers": "last_k", "last_k": 1},
    }
    loss = build_loss(components)
    layers = loss.layers_read(2, 4)
    assert layers == {
        "attentions": {1},
        "teacher_attentions": {2},
        "hidden_states": {1},
        "teacher_hidden_states": {3},
    }
    assert depth(tiny_llama(num_layers=3)) == 3
    out, value, grads = outputs_and_grads(loss, layers, checkpointing)
    full_out, full_value, full_grads = outputs_and_grads(loss, None, checkpointing)
    assert [a is not None for a in out.student_attentions] == [False, True]
    assert [a is not None for a in out.teacher_attentions] == [False, False, True, False]
    assert [h is not None for h in out.teacher_hidden_states] == [False] * 4 + [True]
    assert all(a is not None for a in full_out.teacher_attentions)  # the old way: every layer
    torch.testing.assert_close(value, full_value, rtol=0, atol=0)
    assert len(grads) == len(full_grads) > 0
    for got, want in zip(grads, full_grads, strict=True):
        torch.testing.assert_close(got, want)


def test_the_module_hands_the_losses_only_their_mapped_layers_and_trains():
    from functools import partial

    import lightning as L
    from peft import LoraConfig, get_peft_model
    from torch.utils.data import DataLoader

    from distill.training.module import DistillationModule

    teacher = eager(tiny_llama(num_layers=4, seed=1)).requires_grad_(False)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    student = get_peft_model(eager(tiny_llama(num_layers=2, seed=2)), lora)
    loss = build_loss(
        {"ce": {"weight": 1.0}, "attn_transfer": {"weight": 1.0, "layers": "last_k", "last_k": 1}}
    )
    module = DistillationModule(student, teacher, loss, partial(torch.optim.AdamW, lr=1e-2))
    batch = fake_batch(tiny_tokenizer())
    out = module.forward_outputs(batch, need_teacher=True)
    assert [a is not None for a in out.teacher_attentions] == [False, False, False, True]
    assert [a is not None for a in out.student_attentions] == [False, True]
    trainer = L.Trainer(
        fast_dev_run=True, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    loader = DataLoader([batch], batch_size=None)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    assert trainer.callback_metrics["train/loss/attn_transfer"] > 0
