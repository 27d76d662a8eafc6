"""Builders for the white-box teacher and the student (pruned, 4-bit, LoRA)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from omegaconf import DictConfig
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from distill.errors import ConfigError
from distill.hardware import resolve_dtype
from distill.models.cache import build_once, cache_key
from distill.models.prompt_formats import apply_prompt_format, require_chat_format
from distill.models.sources import resolve_model_dir

log = logging.getLogger(__name__)
# Non-reentrant checkpointing: the form PyTorch recommends, and it works with frozen inputs.
CHECKPOINTING = {"use_reentrant": False}


def load_tokenizer(spec: str) -> PreTrainedTokenizerBase:
    """The tokenizer of a model spec, with a pad token (eos when the model has none)."""
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir(spec))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_student_tokenizer(student: DictConfig, need_chat: bool = True) -> PreTrainedTokenizerBase:
    """The student's tokenizer rendering conversations in `student.prompt_format`.

    With `need_chat` (training, the logit cache) a tokenizer left without a template is refused
    here, before any weights load.
    """
    tokenizer = load_tokenizer(student.path)
    apply_prompt_format(tokenizer, student.get("prompt_format"))
    if need_chat:
        require_chat_format(tokenizer, student.path)
    return tokenizer


def load_teacher_tokenizer(teacher: DictConfig, need_chat: bool = True) -> PreTrainedTokenizerBase:
    """The teacher's tokenizer rendering in `teacher.prompt_format` (else its own template).

    With `need_chat` (a teacher that answers prompts) a tokenizer left without a template is
    refused here, before any weights load; the tokenizer preflight of a white-box teacher needs
    none.
    """
    key = "teacher.prompt_format"
    tokenizer = load_tokenizer(teacher.path)
    apply_prompt_format(tokenizer, teacher.get("prompt_format"), key)
    if need_chat:
        require_chat_format(tokenizer, teacher.path, key)
    return tokenizer


def load_teacher(
    cfg: DictConfig, attn_implementation: str = "sdpa", device: torch.device | str = "cpu"
) -> PreTrainedModel:
    """A frozen white-box teacher in eval mode, on `device`.

    Args:
        cfg: the `teacher` group; `quantization` (nf4, fp4, int8) loads it through bitsandbytes,
            quantized where it loads.
        attn_implementation: "eager" when an active loss needs attention maps.
        device: where the weights go.
    """
    quantization = cfg.get("quantization")
    dtype = resolve_dtype(cfg.dtype, device)
    model = AutoModelForCausalLM.from_pretrained(
        resolve_model_dir(cfg.path),
        dtype=dtype,
        attn_implementation=attn_implementation,
        quantization_config=teacher_quantization_config(quantization, dtype),
        device_map={"": str(device)} if quantization else None,
    )
    model.eval().requires_grad_(False)
    name = str(dtype).removeprefix("torch.")
    bits = {None: name, "int8": "8-bit int8"}.get(quantization, f"4-bit {quantization}")
    log.info("teacher: %s on %s", bits, device)
    return model if quantization else model.to(device)


def teacher_quantization_config(
    quantization: str | None, dtype: torch.dtype
) -> BitsAndBytesConfig | None:
    if quantization is None:
        return None
    if quantization == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quantization,
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )


def prune_layers(model: PreTrainedModel, keep: list[int]) -> PreTrainedModel:
    """Keep only the decoder layers `keep` (in order), renumbering them for the KV cache."""
    layers = model.model.layers
    if max(keep) >= len(layers):
        raise ConfigError(
            [
                f"student.keep_layers={list(keep)} names layer {max(keep)} but the model has "
                f"{len(layers)} layers (0..{len(layers) - 1}): fix student.keep_layers"
            ]
        )
    model.model.layers = torch.nn.ModuleList(layers[i] for i in keep)
    for new_idx, layer in enumerate(model.model.layers):
        layer.self_attn.layer_idx = new_idx
    config = model.config
    if getattr(config, "layer_types", None):
        config.layer_types = [config.layer_types[i] for i in keep]
    config.num_hidden_layers = len(keep)
    return model


def pruned_model_dir(source_dir: str, keep: list[int]) -> str:
    """A cached folder holding `source_dir` with only the layers `keep`, in its stored dtype."""

    def build(out: Path) -> None:
        model = AutoModelForCausalLM.from_pretrained(source_dir, dtype="auto")
        prune_layers(model, keep).save_pretrained(out)
        AutoTokenizer.from_pretrained(source_dir).save_pretrained(out)

    key = cache_key(str(Path(source_dir).resolve()), keep)
    name = f"pruned-{Path(source_dir).name}-{len(keep)}l-{key}"
    return str(build_once(name, build))


def quantization_config(
    cfg: DictConfig, device: torch.device | str | None = None
) -> BitsAndBytesConfig | None:
    if cfg.quantization is None:
        return None
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=cfg.quantization,
        bnb_4bit_use_double_quant=cfg.double_quant,
        bnb_4bit_compute_dtype=resolve_dtype(cfg.compute_dtype, device),
        bnb_4bit_quant_storage=torch.uint8,
    )


def load_base_student(
    cfg: DictConfig, attn_implementation: str = "sdpa", device: torch.device | str | None = None
) -> PreTrainedModel:
    """The student without adapters: pruned to `keep_layers`, quantized when asked, on `device`
    (None: on the CPU, for the Trainer to move; `compute_dtype: auto` then resolves for the GPU
    if there is one; 4-bit weights are quantized where they load)."""
    model_dir = resolve_model_dir(cfg.path)
    if cfg.keep_layers is not None:
        model_dir = pruned_model_dir(model_dir, list(cfg.keep_layers))
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=resolve_dtype(cfg.compute_dtype, device),
        quantization_config=quantization_config(cfg, device),
        attn_implementation=attn_implementation,
        device_map={"": str(device or "cpu")} if cfg.quantization else None,
    )
    return model if cfg.quantization else model.to(device or "cpu")


def keep_4bit_layers_trainable(model: PreTrainedModel) -> None:
    """Stop bitsandbytes from repacking 4-bit weights for CPU inference.

    On CPUs with AVX512-BF16, bitsandbytes (0.50) repacks a `Linear4bit` weight the first time the
    layer runs in eval mode without gradients, and from then on multiplies through a kernel with no
    backward: gradients stop flowing through every 4-bit layer, so LoRA adapters below the last
    layers silently stop learning after the first validation or evaluation pass. A trainable
    student keeps the autograd path.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


def load_student(cfg: DictConfig, attn_implementation: str = "sdpa") -> PreTrainedModel:
    """The trainable student: base model (4-bit when configured) with fresh LoRA adapters.

    Only LoRA parameters require gradients; the (quantized) base stays frozen.
    """
    return add_lora(load_base_student(cfg, attn_implementation), cfg)


def add_lora(model: PreTrainedModel, cfg: DictConfig) -> PreTrainedModel:
    """Freeze a loaded base student (4-bit or not), set up checkpointing, add LoRA adapters.

    Split from `load_student` so a model built in memory (experiments/performance/gpu_7b.py)
    goes through the same k-bit preparation and adapters as one loaded from disk.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if cfg.quantization is not None:
        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg.gradient_checkpointing,
            gradient_checkpointing_kwargs=CHECKPOINTING,
        )
    elif cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=CHECKPOINTING)
    lora = LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        task_type="CAUSAL_LM",
    )
    keep_4bit_layers_trainable(model)
    model = get_peft_model(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info(
        "student: %d trainable of %d parameters (%.2f%%)", trainable, total, 100 * trainable / total
    )
    return model
