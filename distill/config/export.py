"""Export: a trained student as a folder that loads without distill."""

from __future__ import annotations

from dataclasses import dataclass, field

from distill.config.base import Checks

EXPORT_DTYPES = ("bfloat16", "float16", "float32")
GGUF_TYPES = ("f16", "q8_0")
GGUF_ARCHITECTURES = ("llama", "qwen2")  # what distill/export/gguf.py writes


@dataclass
class ExportConfig:
    """`distill export`: merge the LoRA adapters into the student and write a Hugging Face folder.

    `run` is a train or pipeline run directory (its `adapters/`, and the student and data its
    `.hydra/config.yaml` records); or `adapters` is an adapters folder, merged into this config's
    `student`. `check` scores the merged model against the adapters on the base as trained (the
    4-bit one): held-out CE and next-token agreement on `check_examples` answers of the run's
    dataset, and pass@1 on `check_problems` problems of the run's benchmark, greedy. `gguf` adds
    GGUF files (and an Ollama `Modelfile`), each checked against the merged model. Which source
    is given is checked by the export stage (`distill/checks.py`): every stage composes this group.
    """

    run: str | None = None
    adapters: str | None = None
    dtype: str = "bfloat16"
    out: str | None = None  # null: <this export's run directory>/model
    check: bool = True
    check_examples: int = 16
    # pass@1 of both on the run's benchmark (at most its eval.limit); 0: off
    check_problems: int = 20
    gguf: list[str] = field(default_factory=list)  # any of f16, q8_0: llama.cpp / Ollama files

    def __post_init__(self) -> None:
        check = Checks()
        check.require(
            self.dtype in EXPORT_DTYPES,
            f"export.dtype={self.dtype!r}; allowed: {', '.join(EXPORT_DTYPES)}",
        )
        check.require(self.check_examples >= 1, "export.check_examples must be >= 1")
        check.require(self.check_problems >= 0, "export.check_problems must be >= 0 (0: off)")
        unknown = sorted(set(self.gguf) - set(GGUF_TYPES))
        check.require(
            not unknown,
            f"export.gguf={list(self.gguf)}: unknown {unknown}; use a subset of {list(GGUF_TYPES)}",
        )
        check.done()


def check_gguf_request(types: list[str], model_type: str | None = None) -> list[str]:
    """Problems with `export.gguf` for a student of architecture `model_type` (None: not known
    yet); the types themselves are checked by :class:`ExportConfig`."""
    if not types or model_type is None or model_type in GGUF_ARCHITECTURES:
        return []
    return [
        f"export.gguf: the student's architecture {model_type!r} has no GGUF writer here "
        f"(supported: {', '.join(GGUF_ARCHITECTURES)}); export without GGUF (export.gguf=[]) "
        "and convert with llama.cpp's convert_hf_to_gguf.py"
    ]
