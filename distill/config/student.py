"""The student: the model, its pruning, 4-bit quantization and LoRA."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from distill.config.base import DTYPES, QUANTIZATIONS, Checks


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
    )

    def __post_init__(self) -> None:
        check = Checks()
        check.require(self.r > 0, f"student.lora.r={self.r}: must be > 0")
        check.require(0.0 <= self.dropout < 1.0, f"student.lora.dropout={self.dropout}: use [0, 1)")
        check.require(bool(self.target_modules), "student.lora.target_modules is empty")
        check.require(
            "lm_head" not in self.target_modules,
            "student.lora.target_modules includes lm_head: the token losses project hidden "
            "states through the head's own weight chunk by chunk and would miss an adapter on it; "
            "leave lm_head out (its weight stays frozen, as in QLoRA)",
        )
        check.done()


@dataclass
class StudentConfig:
    """The model being trained: optionally pruned to `keep_layers`, quantized, with LoRA."""

    name: str = MISSING
    path: str = MISSING
    keep_layers: list[int] | None = None
    quantization: str | None = "nf4"
    double_quant: bool = True
    compute_dtype: str = "float32"
    lora: LoraSettings = field(default_factory=LoraSettings)
    gradient_checkpointing: bool = False
    # How conversations become tokens: a built-in format name, a Jinja template, or null for the
    # tokenizer's own (distill/models/prompt_formats.py).
    prompt_format: str | None = None

    def __post_init__(self) -> None:
        check = Checks()
        if self.quantization is not None:
            check.require(
                self.quantization in QUANTIZATIONS,
                f"student.quantization={self.quantization!r}: use one of {QUANTIZATIONS} or null",
            )
        check.require(self.compute_dtype in DTYPES, f"student.compute_dtype: use one of {DTYPES}")
        if self.keep_layers is not None:
            layers = list(self.keep_layers)
            check.require(
                len(layers) > 0, "student.keep_layers is empty: list layer indices or null"
            )
            check.require(min(layers) >= 0, f"student.keep_layers={layers}: indices must be >= 0")
            check.require(
                len(set(layers)) == len(layers) and layers == sorted(layers),
                f"student.keep_layers={layers}: indices must be increasing and unique",
            )
        check.done()
