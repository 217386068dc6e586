"""Model families by kebab-case name: name -> (config dataclass, nn.Module class).

Families register themselves with `@register_family`; `training.models` imports every family module
so that looking a name up always sees the full registry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_FAMILIES: dict[str, tuple[type, type]] = {}


def register_family(name: str, config_class: type) -> Callable[[type], type]:
    """Class decorator: register a model class and its config dataclass under `name`."""

    def decorator(model_class: type) -> type:
        if name in _FAMILIES:
            raise ValueError(f"model family {name!r} registered twice")
        _FAMILIES[name] = (config_class, model_class)
        return model_class

    return decorator


def _lookup(name: str) -> tuple[type, type]:
    import training.models  # noqa: F401  (registers every family)

    if name not in _FAMILIES:
        known = ", ".join(sorted(_FAMILIES))
        raise ValueError(f"unknown model family {name!r}; known families: {known}")
    return _FAMILIES[name]


def model_config_class(name: str) -> type:
    """The config dataclass of a family."""
    return _lookup(name)[0]


def build_model(config: Any) -> Any:
    """Instantiate the model a config describes."""
    return _lookup(config.family)[1](config)


def families() -> list[str]:
    """Registered family names."""
    import training.models  # noqa: F401

    return sorted(_FAMILIES)
