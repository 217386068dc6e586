"""The version policy: which versions of each model the service loads (Triton's `version_policy`).

The repository's `policy.toml` (or the file `AE_VERSION_POLICY` names):

    [default]                 # every model without its own entry or a task entry
    latest = 1
    [tasks.compress]          # codecs: every version, so streams made by any of them still decode
    all = true
    [models.image-denoise]    # one model: exactly these versions
    specific = [2, 3]

Each rule holds exactly one of `latest = N` (the N highest versions on disk), `all = true` or
`specific = [versions]`. A model's rule is its `[models.NAME]` entry, else its task's entry (the task
of its highest version), else `[default]`. Without a file the built-in policy applies: exactly the
first two sections above, no model entries. A file starts from it too: `[default]` left out stays
latest 1, and `[tasks.compress]` stays `all` unless the file gives its own.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from service.manifest import Task

POLICY_FILE = "policy.toml"

Version = Annotated[StrictInt, Field(ge=1)]
_CODEC_TASK: Task = "compress"
ModelName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]


class VersionPolicyError(ValueError):
    """A policy file that cannot be used, with the reason (start-up stops on it)."""


class VersionRule(BaseModel):
    """One model's rule: exactly one of `latest`, `all` or `specific`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latest: Version | None = None
    all: Literal[True] | None = None
    specific: list[Version] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _exactly_one(self) -> VersionRule:
        given = [key for key in ("latest", "all", "specific") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"a rule holds exactly one of latest = N, all = true, specific = [...]; got {given}")
        if self.specific is not None and len(set(self.specific)) != len(self.specific):
            raise ValueError(f"specific lists a version twice: {self.specific}")
        return self

    def select(self, on_disk: list[int]) -> list[int]:
        """The versions this rule loads out of those on disk, lowest first."""
        ordered = sorted(on_disk)
        if self.latest is not None:
            return ordered[-self.latest :]
        if self.specific is not None:
            return [v for v in ordered if v in self.specific]
        return ordered

    def missing(self, on_disk: list[int]) -> list[int]:
        """Versions the rule names that are not on disk (only `specific` names versions)."""
        return sorted(set(self.specific or ()) - set(on_disk))

    def __str__(self) -> str:
        if self.latest is not None:
            return f"latest {self.latest}"
        if self.specific is not None:
            return f"specific {sorted(self.specific)}"
        return "all"


class VersionPolicy(BaseModel):
    """The whole policy file; every section is optional and defaults to the built-in policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default: VersionRule = Field(default_factory=lambda: VersionRule(latest=1))
    tasks: dict[Task, VersionRule] = Field(default_factory=dict, validate_default=True)
    models: dict[ModelName, VersionRule] = Field(default_factory=dict)

    @field_validator("tasks", mode="after")
    @classmethod
    def _over_built_in_tasks(cls, tasks: dict[Task, VersionRule]) -> dict[Task, VersionRule]:
        # Streams name the codec version that wrote them: a file that only adds some other task's
        # entry must not drop codec versions on the way, so the built-in entries stay unless replaced.
        return {_CODEC_TASK: VersionRule(all=True), **tasks}

    def rule_for(self, name: str, task: str | None) -> VersionRule:
        """The rule of one model: its own entry, else its task's, else the default."""
        if name in self.models:
            return self.models[name]
        if task is not None and task in self.tasks:
            return self.tasks[task]
        return self.default


def load_policy(path: Path, *, required: bool) -> VersionPolicy:
    """Read and validate a policy file; the built-in policy when it is absent and not `required`."""
    if not path.is_file():
        if required:
            raise VersionPolicyError(f"version policy {path} not found")
        return VersionPolicy()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise VersionPolicyError(f"version policy {path} is not valid TOML: {error}") from error
    try:
        return VersionPolicy.model_validate(data)
    except ValidationError as error:
        raise VersionPolicyError(f"version policy {path}: {_describe(error)}") from error


def _describe(error: ValidationError) -> str:
    """One line per problem, `where: what`, without pydantic's URLs."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        what = "unknown key" if item["type"] == "extra_forbidden" else item["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {what}")
    return "; ".join(problems)
