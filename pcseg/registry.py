"""Flat registries mapping config names to constructors.

A component in a config is a mapping ``{"name": <registered name>, **keyword_arguments}``.
:meth:`Registry.check` validates such a spec against the constructor's signature without
building it, so a config is rejected at load time, with the valid names listed, instead of
failing deep inside a run.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value that cannot be used; the message says where and what is valid."""


class Registry(Generic[T]):
    """Names to constructors for one kind of component (backbones, transforms, ...)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        def add(constructor: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = constructor
            return constructor

        return add

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._entries))

    def get(self, name: str, *, where: str = "") -> Callable[..., T]:
        if name not in self._entries:
            raise ConfigError(
                f"{where or self.kind}: unknown {self.kind} {name!r}; "
                f"valid names: {', '.join(self.names())}"
            )
        return self._entries[name]

    def parameters(self, name: str, *, where: str = "") -> tuple[str, ...]:
        """Keyword arguments the constructor of ``name`` accepts."""
        signature = inspect.signature(self.get(name, where=where))
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return tuple(p.name for p in signature.parameters.values() if p.kind in kinds)

    def check(self, spec: Any, *, where: str, provided: tuple[str, ...] = ()) -> None:
        """Validate ``spec`` (``{"name": ..., **kwargs}``) without building it.

        Args:
            spec: the mapping from the config.
            where: dotted config path used in error messages.
            provided: arguments the builder supplies itself (e.g. ``in_channels``); a spec
                may not set them.
        """
        if not isinstance(spec, Mapping) or "name" not in spec:
            raise ConfigError(f"{where}: expected a mapping with a 'name' key, got {spec!r}")
        name = spec["name"]
        valid = [p for p in self.parameters(name, where=where) if p not in provided]
        unknown = sorted(set(spec) - {"name"} - set(valid))
        if unknown:
            raise ConfigError(
                f"{where}: {self.kind} {name!r} has no argument(s) {', '.join(unknown)}; "
                f"valid: {', '.join(valid) or '(none)'}"
            )
        signature = inspect.signature(self.get(name))
        missing = [
            p.name
            for p in signature.parameters.values()
            if p.default is inspect.Parameter.empty
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
            and p.name not in spec
            and p.name not in provided
        ]
        if missing:
            raise ConfigError(f"{where}: {self.kind} {name!r} needs {', '.join(missing)}")

    def build(self, spec: Mapping[str, Any], *, where: str = "", **provided: Any) -> T:
        """Construct the component ``spec`` names, with ``provided`` arguments added."""
        self.check(spec, where=where or self.kind, provided=tuple(provided))
        kwargs = {key: value for key, value in spec.items() if key != "name"}
        return self.get(spec["name"])(**kwargs, **provided)
