"""Checks against what the served models offer, made before anything is sent.

Today's codecs are a ladder of fixed-quality models (`image-codec-q1` .. `-q5`, higher is more bits
and better quality) with no rate control. So `--quality Q` picks a rung: `-m image-codec --quality 3`
means `image-codec-q3`; and `--target-bpp` is refused, saying so, since no served codec can aim at a
rate (picking the rung closest to a rate would need a trial encode per rung and file).
"""

from __future__ import annotations

import re

from client.errors import UnsupportedOptionError
from client.results import ModelInfo, VersionInfo

_RUNG = re.compile(r"^(?P<base>.+)-q(?P<quality>\d+)$")


def pick_version(models: list[ModelInfo], name: str, version: int | None) -> VersionInfo:
    """The version a request to `name` (and `version`, else the default) is served by; refused if none."""
    by_name = {model.name: model for model in models}
    if name not in by_name:
        served = ", ".join(sorted(by_name)) or "none"
        raise UnsupportedOptionError(f"model {name!r} is not served (served: {served})")
    model = by_name[name]
    try:
        return model.version(version if version is not None else model.default_version)
    except KeyError:
        loaded = ", ".join(str(info.version) for info in model.versions)
        raise UnsupportedOptionError(f"{name} has no loaded version {version} (loaded: {loaded})") from None


def codec_for(models: list[ModelInfo], name: str, quality: int | None, target_bpp: float | None) -> str:
    """The codec model `ae compress` uses for `-m name`, `--quality` and `--target-bpp`."""
    codecs = sorted(model.name for model in models if model.default.task == "compress")
    if target_bpp is not None:
        raise UnsupportedOptionError(
            f"--target-bpp is not supported: the served codecs ({', '.join(codecs) or 'none'}) are fixed-quality "
            "models with no rate control; pick a quality with --quality Q (-m BASE --quality Q uses BASE-qQ)"
        )
    rungs = ladder(codecs, _RUNG.sub(r"\g<base>", name))
    if quality is not None:
        if _RUNG.match(name) and name in codecs:
            raise UnsupportedOptionError(
                f"{name} is itself one fixed quality: drop --quality, or use -m BASE --quality Q"
            )
        if quality not in rungs:
            offered = ", ".join(map(str, sorted(rungs))) or "none"
            raise UnsupportedOptionError(f"no model {name}-q{quality} is served (qualities of {name}: {offered})")
        return rungs[quality]
    if name not in codecs and rungs:
        raise UnsupportedOptionError(
            f"{name} is a ladder of fixed-quality models: add --quality Q, Q in {sorted(rungs)}"
        )
    return name


def ladder(codecs: list[str], base: str) -> dict[int, str]:
    """Quality -> model name for the codecs named `{base}-q{Q}`."""
    return {int(m["quality"]): m.string for m in map(_RUNG.match, codecs) if m and m["base"] == base}


def require(info: VersionInfo, name: str, operation: str, input_kind: str, task: str | None = None) -> None:
    """Refuse a model whose input kind, operations or task do not fit the command."""
    if info.input_kind != input_kind:
        raise UnsupportedOptionError(f"{name} takes {info.input_kind} input; this command needs a {input_kind} model")
    if operation not in info.operations:
        offered = ", ".join(info.operations)
        raise UnsupportedOptionError(f"{name} does not offer {operation} (it offers {offered})")
    if task is not None and info.task != task:
        raise UnsupportedOptionError(f"{name} is a {info.task} model; this command needs a {task} model")
