"""Start-up messages an operator reads: settings mistakes in one line each, and the summary of what runs.

Both `ae-serve` and `uvicorn service.main:app` read the settings through `settings_or_exit`, so a
mistake such as `AE_PROVIDERS=CPUExecutionProvider` (not a JSON list) is one line naming the variable,
its value and the form expected, never a traceback through pydantic's internals.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any, get_origin

from pydantic import ValidationError
from pydantic_settings import SettingsError

from service.config import Settings
from service.gpu_memory import gpu_memory_summary

# Settings whose values are secrets: a mistake in one is reported without echoing the value.
_SECRET_FIELDS = {"api_keys", "stream_key", "admin_keys"}
# pydantic-settings names the field in the message of a value it cannot JSON-decode.
_FIELD_IN_MESSAGE = re.compile(r'field "(\w+)"')
# Longer values are cut in messages: the line must stay one readable line.
_MAX_SHOWN_CHARS = 80


def variable_of(field: str) -> str:
    """The environment variable of a settings field (`providers` -> `AE_PROVIDERS`)."""
    return "AE_" + field.upper()


def _shown_value(field: str) -> str:
    """The variable's value as the message shows it: quoted, cut when long, hidden for secrets."""
    if field in _SECRET_FIELDS:
        return "(value hidden)"
    value = os.environ.get(variable_of(field))
    if value is None:
        return "(unset)"
    shown = value if len(value) <= _MAX_SHOWN_CHARS else value[:_MAX_SHOWN_CHARS] + "..."
    return repr(shown)


def _expected_json_form(field: str) -> str:
    """What a field read as JSON must look like, with its default as the example."""
    info = Settings.model_fields.get(field)
    if info is None:
        return "a JSON value"
    example = info.get_default(call_default_factory=True)
    kind = "a JSON list" if get_origin(info.annotation) is list else "a JSON value"
    return f"{kind}, e.g. {_compact_json(example)}"


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def settings_problems(error: ValidationError | SettingsError) -> list[str]:
    """One line per mistake: `AE_NAME='value': what is wrong and what is expected`."""
    if isinstance(error, SettingsError):
        # pydantic-settings raises this (with the JSON error as its cause) when a list or dict setting is not JSON.
        match = _FIELD_IN_MESSAGE.search(str(error))
        if match is None:
            return [str(error)]
        field = match.group(1)
        return [f"{variable_of(field)}={_shown_value(field)} is not JSON: expected {_expected_json_form(field)}"]
    lines = []
    for problem in error.errors():
        location = problem["loc"]
        field = str(location[0]) if location else ""
        message = str(problem["msg"]).removeprefix("Value error, ")
        if message.startswith("AE_"):  # our validators already name the variable (and hide secrets)
            lines.append(message)
            continue
        where = "".join(f"[{part}]" for part in location[1:])  # the item of a list that is wrong
        lines.append(f"{variable_of(field)}={_shown_value(field)}: {where + ' ' if where else ''}{message}")
    return lines


def settings_or_exit(program: str) -> Settings:
    """The settings from the environment, or exit 2 with one line per mistake (no traceback to read)."""
    try:
        return Settings()
    except (ValidationError, SettingsError) as error:
        sys.stderr.write("".join(f"{program}: {line}\n" for line in settings_problems(error)))
        raise SystemExit(2) from None


def _version_policy_source(settings: Settings) -> str:
    """Where the version policy came from, as `service.repository` resolves it."""
    path = settings.version_policy or settings.repository / "policy.toml"
    return str(path) if path.is_file() else "built-in (no policy file)"


def effective_settings(settings: Settings, providers_in_use: list[str]) -> dict[str, Any]:
    """Every setting as this worker runs with it, for the one start-up summary line; never a secret.

    API keys are reported as on or off and counted, the stream key as on or off: neither is shown.
    """
    shown = settings.model_dump(mode="json", exclude=_SECRET_FIELDS | {"strict_models"})
    return {
        **shown,
        "auth": "on" if settings.api_keys else "off",
        "api_key_count": len(settings.api_keys),
        "admin_key_count": len(settings.admin_keys),
        "stream_signing": "on" if getattr(settings, "stream_key", None) is not None else "off",
        "workers": settings.resolved_workers(),
        "providers_requested": settings.providers,
        "providers": providers_in_use,
        "version_policy": _version_policy_source(settings),
        "gpu_memory": gpu_memory_summary(settings.gpu_memory_limit_mb, providers_in_use),
    }
