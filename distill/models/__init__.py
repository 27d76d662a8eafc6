"""Loading students and white-box teachers: the embedded models, pruning, 4-bit, LoRA.

The loaders import torch and transformers, so they are resolved on first use: code that needs only
`distill.models.cache` (the evaluation's ground-truth cache, say) stays light.
"""

import importlib
from typing import Any

_EXPORTS = {
    "load_student": "distill.models.loading",
    "load_student_tokenizer": "distill.models.loading",
    "load_teacher": "distill.models.loading",
    "load_teacher_tokenizer": "distill.models.loading",
    "load_tokenizer": "distill.models.loading",
    "resolve_model_dir": "distill.models.sources",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'distill.models' has no attribute {name!r}")
