"""A generic name -> factory registry shared by losses, schedules, teachers and benchmarks."""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
import pkgutil
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Registry(Generic[T]):
    """Maps short names to factories (usually classes).

    Args:
        kind: what is registered, used in error messages ("loss", "schedule").
        entry_point_group: an installed-package entry-point group loaded lazily on first lookup.
        plural: the plural of `kind` for messages (default: kind + "s").
    """

    def __init__(
        self, kind: str, entry_point_group: str | None = None, plural: str | None = None
    ) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self.entry_point_group = entry_point_group
        self._items: dict[str, Callable[..., T]] = {}
        self._entry_points_loaded = entry_point_group is None

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator registering a factory under ``name``; a second use of a name is an error."""

        def decorator(factory: Callable[..., T]) -> Callable[..., T]:
            existing = self._items.get(name)
            if existing is not None and existing is not factory:
                raise ValueError(
                    f"{self.kind} '{name}' is already registered by "
                    f"{existing.__module__}.{existing.__qualname__}; choose another name"
                )
            self._items[name] = factory
            return factory

        return decorator

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._items)

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under ``name``; a miss names the closest match and the list."""
        self._load_entry_points()
        if name not in self._items:
            raise KeyError(self.miss_message(name))
        return self._items[name]

    def miss_message(self, name: str) -> str:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" (closest: '{close[0]}')" if close else ""
        return (
            f"{self.kind} '{name}' is not registered{hint}; "
            f"registered {self.plural}: {', '.join(names) or 'none'}"
        )

    def bind(self, name: str, kwargs: dict[str, Any]) -> inspect.BoundArguments:
        """Bind ``kwargs`` to the factory's signature; raises TypeError naming the bad keys."""
        factory = self.get(name)
        signature = inspect.signature(factory)
        try:
            return signature.bind(**kwargs)
        except TypeError as err:
            allowed = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
            raise TypeError(
                f"{self.kind} '{name}': {err}; its arguments are: {', '.join(allowed) or 'none'}"
            ) from None

    def build(self, name: str, **kwargs: Any) -> T:
        """Bind first (so a bad key is reported clearly), then call the factory."""
        bound = self.bind(name, kwargs)
        return self.get(name)(*bound.args, **bound.kwargs)

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.entry_point_group):
            try:
                self.register(ep.name)(ep.load())
            except Exception as err:  # a broken plugin must not hide the built-in ones
                log.warning("could not load %s plugin '%s': %s", self.kind, ep.name, err)


def import_submodules(package: str, path: list[str]) -> None:
    """Import every non-underscore module of ``package`` (its ``__path__`` is ``path``), so that
    a new file with a ``@register_*`` class is found with no other change."""
    for module in pkgutil.iter_modules(path):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
