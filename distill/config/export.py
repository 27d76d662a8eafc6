"""Export: a trained student as a folder that loads without distill."""

from __future__ import annotations

from dataclasses import dataclass

from distill.config.base import Checks

EXPORT_DTYPES = ("bfloat16", "float16", "float32")


@dataclass
class ExportConfig:
    """`distill export`: merge the LoRA adapters into the student and write a Hugging Face folder.

    `run` is a train or pipeline run directory (its `adapters/`, and the student and data its
    `.hydra/config.yaml` records); or `adapters` is an adapters folder, merged into this config's
    `student`. `check` scores the merged model against the adapters on the base as trained (the
    4-bit one) on `check_examples` held-out answers of the run's dataset. Which source is given
    is checked by the export stage (`distill/checks.py`): every stage composes this group.
    """

    run: str | None = None
    adapters: str | None = None
    dtype: str = "bfloat16"
    out: str | None = None  # null: <this export's run directory>/model
    check: bool = True
    check_examples: int = 16

    def __post_init__(self) -> None:
        check = Checks()
        check.require(
            self.dtype in EXPORT_DTYPES,
            f"export.dtype={self.dtype!r}; allowed: {', '.join(EXPORT_DTYPES)}",
        )
        check.require(self.check_examples >= 1, "export.check_examples must be >= 1")
        check.done()
