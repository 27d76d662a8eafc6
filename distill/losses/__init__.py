"""The loss registry and every built-in component.

Every non-underscore module in this package is imported here, so a new file with a
`@register_loss("name")` class is found with no other change.
"""

from distill.losses.base import (
    IGNORE_INDEX,
    LOSSES,
    DistillLoss,
    StepOutputs,
    load_plugins,
    register_loss,
)
from distill.losses.composite import CompositeLoss, build_loss, check_loss_config
from distill.registry import import_submodules

import_submodules(__name__, __path__)

__all__ = [
    "IGNORE_INDEX",
    "LOSSES",
    "CompositeLoss",
    "DistillLoss",
    "StepOutputs",
    "build_loss",
    "check_loss_config",
    "load_plugins",
    "register_loss",
]
