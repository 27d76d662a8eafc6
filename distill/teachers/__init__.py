"""Teachers: who answers the instructions (text) and, when white-box, gives logits.

Every non-underscore module in this package is imported here, so a new file with a
`@register_teacher("kind")` class is found with no other change.
"""

from distill.registry import import_submodules
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

import_submodules(__name__, __path__)

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
