"""A model spec (`embedded:<name>`, `tiny:<role>`, a folder or a hub id) as a local folder."""

from __future__ import annotations

from distill.models.embedded import embedded_model_dir
from distill.models.tiny import tiny_model_dir


def resolve_model_dir(spec: str) -> str:
    """A local folder for `spec`; hub ids are returned unchanged for `from_pretrained`."""
    scheme, _, name = spec.partition(":")
    if scheme == "embedded":
        return str(embedded_model_dir(name))
    if scheme == "tiny":
        return str(tiny_model_dir(name))
    return spec
