"""Teachers: who answers the instructions (text) and, when white-box, gives logits.

Every non-underscore module in this package is imported here, so a new file with a
`@register_teacher("kind")` class is found with no other change.
"""

import importlib
import pkgutil

from distill.teachers.base import (
    CAPABILITIES,
    TEACHERS,
    Answer,
    Failure,
    Journal,
    Request,
    Teacher,
    build_teacher,
    capabilities,
    gives_logits,
    register_teacher,
)

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "CAPABILITIES",
    "TEACHERS",
    "Answer",
    "Failure",
    "Journal",
    "Request",
    "Teacher",
    "build_teacher",
    "capabilities",
    "gives_logits",
    "register_teacher",
]
