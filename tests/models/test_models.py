"""Pruning, the build-once cache, the student builder (LoRA, 4-bit) and the embedded default."""

from __future__ import annotations

import time

import bitsandbytes as bnb
import pytest
import torch
from omegaconf import OmegaConf

from distill.config import StudentConfig
from distill.models import embedded
from distill.models.cache import CorruptCache, build_once
from distill.models.loading import load_student, load_teacher, prune_layers
from distill.teachers.hf import HFTeacherConfig
from distill.testing import fake_batch, tiny_llama, tiny_tokenizer


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))


def student_cfg(path: str, **overrides):
    return OmegaConf.structured(StudentConfig(path=path, **overrides))


def test_prune_layers_keeps_named_layers_and_renumbers_them():
    model = tiny_llama(4, seed=1)
    kept = [model.model.layers[1], model.model.layers[3]]
    prune_layers(model, [1, 3])
    assert list(model.model.layers) == kept
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1]
    assert model.config.num_hidden_layers == 2
    prompt = torch.tensor([[10, 11, 12, 13, 14]])
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 3}
    cached = model.generate(prompt, use_cache=True, **kwargs)
    assert cached.shape == (1, 11)
    assert torch.equal(cached, model.generate(prompt, use_cache=False, **kwargs))


def test_prune_layers_out_of_range_names_keep_layers():
    with pytest.raises(
        ValueError, match=r"student\.keep_layers=\[0, 2\] names layer 2 .* 2 layers"
    ):
        prune_layers(tiny_llama(2), [0, 2])


def test_build_once_builds_once_and_leaves_no_temp_folder(tmp_path):
    calls = []

    def build(out):
        calls.append(out)
        (out / "config.json").write_text("{}")

    first = build_once("thing", build)
    second = build_once("thing", build)
    assert first == second == tmp_path / "cache" / "thing"
    assert len(calls) == 1 and (first / "config.json").exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["thing"]


def test_a_damaged_cached_model_is_refused_with_the_fix(tmp_path, monkeypatch):
    from distill.models import cache

    def build(out):
        (out / "config.json").write_text("{}")
        (out / "model.safetensors").write_bytes(b"weights" * 100)

    folder = build_once("model", build)
    weights = folder / "model.safetensors"
    monkeypatch.setattr(cache, "_verified", {})  # a new process: nothing verified yet
    weights.write_bytes(b"weightz" * 100)  # same size, other bytes
    with pytest.raises(CorruptCache, match=rf"model.safetensors differs .*`rm -rf {folder}`"):
        build_once("model", build)
    weights.unlink()
    with pytest.raises(CorruptCache, match="model.safetensors is missing"):
        build_once("model", build)
    (folder / "distill-build.json").unlink()  # an older distill's folder, or an interrupted copy
    with pytest.raises(CorruptCache, match="has no distill-build.json"):
        build_once("model", build)


def test_build_once_leaves_nothing_when_the_build_fails(tmp_path):
    def build(out):
        (out / "half.bin").write_text("x")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        build_once("broken", build)
    assert list((tmp_path / "cache").iterdir()) == []


def test_load_student_trains_only_lora():
    student = load_student(student_cfg("tiny:student", quantization=None))
    trainable = [n for n, p in student.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("lora_" not in n for n, _ in student.named_parameters())
    assert len(student.base_model.model.model.layers) == 2


def test_load_student_prunes_to_keep_layers():
    student = load_student(student_cfg("tiny:student", quantization=None, keep_layers=[0]))
    assert len(student.base_model.model.model.layers) == 1
    assert student.config.num_hidden_layers == 1
    logits = student(input_ids=torch.tensor([[10, 11, 12]])).logits
    assert logits.shape == (1, 3, 128)


def test_load_student_with_gradient_checkpointing_still_trains_lora():
    cfg = student_cfg("tiny:student", quantization=None, gradient_checkpointing=True)
    student = load_student(cfg).train()
    assert all(layer.gradient_checkpointing for layer in student.base_model.model.model.layers)
    student(**fake_batch(tiny_tokenizer())).loss.backward()
    trainable = {n: p for n, p in student.named_parameters() if p.requires_grad}
    assert all(p.grad is not None for p in trainable.values())
    assert all(p.grad.abs().sum() > 0 for n, p in trainable.items() if "lora_B" in n)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_load_student_in_4bit_trains_only_lora(tmp_path, checkpointing):
    source = tmp_path / "tiny64"
    tiny_llama(2, hidden_size=64).save_pretrained(source)
    tokenizer = tiny_tokenizer()
    tokenizer.save_pretrained(source)
    cfg = student_cfg(str(source), quantization="nf4", gradient_checkpointing=checkpointing)
    student = load_student(cfg)
    linear4 = [m for m in student.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(linear4) == 2 * 7  # every projection of both layers
    assert all(m.weight.quant_state.quant_type == "nf4" for m in linear4)
    batch = fake_batch(tokenizer)
    student.train()
    out = student(**batch)
    out.loss.backward()
    with_grad = {n for n, p in student.named_parameters() if p.grad is not None}
    trainable = {n for n, p in student.named_parameters() if p.requires_grad}
    assert with_grad == trainable and all("lora_" in n for n in with_grad)
    assert any(student.get_parameter(n).grad.abs().sum() > 0 for n in with_grad)
    student.eval()
    with torch.no_grad():
        assert torch.isfinite(student(**batch).logits).all()


@pytest.mark.slow
def test_embedded_default_converts_once_and_answers(monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.data.quality.checks import extract_code, python_syntax_ok

    start = time.perf_counter()
    folder = embedded.embedded_model_dir()
    converted_in = time.perf_counter() - start
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (folder / name).exists(), name
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    messages = [{"role": "user", "content": "Write a Python function that adds two numbers."}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=64, do_sample=False)
    answer = tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    code = extract_code(answer)
    assert "def " in code and python_syntax_ok(code), answer

    def must_not_run(*args):
        raise AssertionError("converted twice")

    monkeypatch.setattr(embedded, "convert_gguf", must_not_run)
    start = time.perf_counter()
    assert embedded.embedded_model_dir() == folder
    assert time.perf_counter() - start < min(1.0, converted_in / 10)


def test_4bit_student_still_learns_after_an_inference_pass(tmp_path):
    """bitsandbytes repacks 4-bit weights for CPU inference after an eval-mode no-grad forward and
    then multiplies without a backward; the student must keep its gradients flowing regardless."""
    tiny_llama(2, hidden_size=64).save_pretrained(tmp_path / "base")
    tiny_tokenizer().save_pretrained(tmp_path / "base")
    student = load_student(
        OmegaConf.create(
            {
                "path": str(tmp_path / "base"),
                "keep_layers": None,
                "quantization": "nf4",
                "double_quant": True,
                "compute_dtype": "float32",
                "gradient_checkpointing": False,
                "lora": {
                    "r": 4,
                    "alpha": 8,
                    "dropout": 0.0,
                    "target_modules": ["q_proj", "v_proj"],
                },
            }
        )
    )
    batch = fake_batch(tiny_tokenizer())
    with torch.inference_mode():
        student.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    student.train()(**batch).loss.backward()
    lora_b = {n: p.grad for n, p in student.named_parameters() if "lora_B" in n}
    assert len(lora_b) == 4
    assert all(g is not None and g.abs().sum() > 0 for g in lora_b.values()), lora_b.keys()


@pytest.mark.parametrize(
    "quantization, layer", [("nf4", bnb.nn.Linear4bit), ("int8", bnb.nn.Linear8bitLt)]
)
def test_a_teacher_loads_in_4_or_8_bit_and_still_agrees_with_itself(tmp_path, quantization, layer):
    """teacher.quantization: a 34B teacher beside the 7B student on one GPU; bitsandbytes runs
    both on the CPU too."""
    tiny_llama(2, hidden_size=64, initializer_range=0.1).save_pretrained(tmp_path / "t")
    cfg = OmegaConf.structured(HFTeacherConfig(name="t", path=str(tmp_path / "t")))
    full = load_teacher(cfg)
    cfg.quantization = quantization
    teacher = load_teacher(cfg, device="cpu")
    assert isinstance(teacher.model.layers[0].self_attn.q_proj, layer)
    assert not isinstance(full.model.layers[0].self_attn.q_proj, layer)
    assert not any(p.requires_grad for p in teacher.parameters())
    ids = fake_batch(tiny_tokenizer())["input_ids"]
    with torch.no_grad():
        want, got = full(ids).logits, teacher(ids).logits
    assert torch.isfinite(got).all()
    # most next-token choices survive quantization (chance: 1 in 128)
    assert (got.argmax(-1) == want.argmax(-1)).float().mean() > 0.5


def test_an_unknown_teacher_quantization_names_the_choices():
    with pytest.raises(ValueError, match=r"teacher.quantization='int4': use one of .*'int8'"):
        HFTeacherConfig(name="t", path="p", quantization="int4")
