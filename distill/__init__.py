"""distill: distil a frontier code model into a small open one."""

__version__ = "0.1.0"
