"""The loss registry and every built-in component.

Every non-underscore module in this package is imported here, so a new file with a
`@register_loss("name")` class is found with no other change.
"""

import importlib
import pkgutil

from distill.losses.base import (
    IGNORE_INDEX,
    LOSSES,
    DistillLoss,
    StepOutputs,
    load_plugins,
    register_loss,
)
from distill.losses.composite import CompositeLoss, build_loss, check_loss_config

for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

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
