"""`ae-train fit --print-config`: every config key, its value for this run, its default and meaning.

The meanings are read from the config dataclasses themselves (the string literal under each field),
so the listing cannot drift from the code: a field without one is an error here and in the tests.
The output is TOML, so it can be saved and edited as a config of its own.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import json
import textwrap
import typing
from typing import Any

from training.config import RunConfig, family_of
from training.registry import families


def field_meanings(cls: type) -> dict[str, str]:
    """{field name: the string literal right under it} for a dataclass, from its source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    meanings = {}
    for node, following in itertools.pairwise(body):
        is_doc = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and is_doc:
            meanings[node.target.id] = " ".join(str(following.value.value).split())
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in meanings]
    if missing:
        raise ValueError(f"{cls.__name__} fields without a meaning (a string under the field): {', '.join(missing)}")
    return meanings


def _choices(cls: type, name: str) -> str:
    """The allowed values of a Literal field (` [a | b]`), taken from the type itself."""
    hint = typing.get_type_hints(cls)[name]
    if typing.get_origin(hint) is typing.Literal:
        return " [" + " | ".join(json.dumps(v) for v in typing.get_args(hint)) + "]"
    return ""


def _toml(value: Any) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def _section_lines(instance: Any) -> list[str]:
    cls = type(instance)
    meanings = field_meanings(cls)
    defaults = cls()
    lines = []
    for f in dataclasses.fields(cls):
        value, default = getattr(instance, f.name), getattr(defaults, f.name)
        # TOML has no null: a key left unset is shown commented out.
        assignment = f"{f.name} = {_toml(value)}" if value is not None else f"# {f.name} = (unset)"
        changed = "" if value == default else f" (default: {'unset' if default is None else _toml(default)})"
        lines.append(f"{assignment:<40} # {meanings[f.name]}{_choices(cls, f.name)}{changed}")
    return lines


def render_config(config: RunConfig, source: str) -> str:
    """The whole run config as commented TOML, one line per key."""
    family = f'family = "{family_of(config.model)}"'
    return "\n".join(
        [
            f"# ae-train fit {source}: every key with the value this run uses; (default: ...) marks a changed one",
            "[model]",
            f"{family:<40} # model family, which decides the keys below [{' | '.join(families())}]",
            *_section_lines(config.model),
            "",
            "[data]",
            *_section_lines(config.data),
            "",
            "[optim]",
            *_section_lines(config.optim),
        ]
    )
