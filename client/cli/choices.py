"""Checks against what the served models offer, made before anything is sent.

Codecs come in two kinds. A variable-rate codec (`image-codec`) is one model for every rate: it takes
a quality in [0, 1], or a size target (bits per pixel, bytes) that its rate control meets from below.
A fixed-rate codec has one quality; `image-codec-q1` .. `-q5` are a ladder of them (higher is more
bits and better quality). So `ae compress -m NAME` reads the rate options by what NAME is:

- NAME is served: `--quality`, `--target-bpp` and `--max-bytes` go to it as they are. The server
  decides whether it has rate control (a fixed-rate codec answers 422, reported per file like any
  other error): the model list does not say, and one rule for every served name is easier to predict.
- NAME is not served but `NAME-qQ` rungs are: `--quality Q` picks the rung `NAME-qQ`, as before
  variable-rate codecs existed; `--target-bpp` and `--max-bytes` are refused, since rungs have no
  rate control (picking the rung closest to a rate would need a trial encode per rung and file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from client.errors import UnsupportedOptionError
from client.results import ModelInfo, VersionInfo

_RUNG = re.compile(r"^(?P<base>.+)-q(?P<quality>\d+)$")


@dataclass(frozen=True)
class CodecChoice:
    """The model `ae compress` sends to and the rate it asks of it (nothing asked: the model's default)."""

    model: str
    quality: float | None = None
    target_bpp: float | None = None
    max_bytes: int | None = None


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


def codec_for(
    models: list[ModelInfo],
    name: str,
    quality: float | None,
    target_bpp: float | None,
    max_bytes: int | None = None,
) -> CodecChoice:
    """The codec `ae compress` uses for `-m name` and the rate options (see the module doc)."""
    codecs = sorted(model.name for model in models if model.default.task == "compress")
    rungs = ladder(codecs, name)
    if name in {model.name for model in models}:
        if name in codecs and quality is not None and not 0.0 <= quality <= 1.0:
            raise UnsupportedOptionError(_quality_range_message(name, quality, rungs))
        return CodecChoice(name, quality, target_bpp, max_bytes)  # not a codec: `require` refuses it
    if not rungs:
        return CodecChoice(name)  # unknown: `pick_version` refuses it, listing what is served
    offered = ", ".join(map(str, rungs))
    for option, value in (("--target-bpp", target_bpp), ("--max-bytes", max_bytes)):
        if value is not None:
            raise UnsupportedOptionError(
                f"{option} needs a variable-rate codec (rate control), and {name} names a ladder of fixed-rate "
                f"codecs ({', '.join(rungs.values())}): pick a rung with --quality Q, Q in [{offered}]"
            )
    if quality is None:
        raise UnsupportedOptionError(f"{name} is a ladder of fixed-quality models: add --quality Q, Q in [{offered}]")
    if _whole(quality) not in rungs:
        raise UnsupportedOptionError(f"no model {name}-q{quality:g} is served (qualities of {name}: {offered})")
    return CodecChoice(rungs[int(quality)])


def ladder(codecs: list[str], base: str) -> dict[int, str]:
    """Quality -> model name for the codecs named `{base}-q{Q}`, in rising quality."""
    found = {int(m["quality"]): m.string for m in map(_RUNG.match, codecs) if m and m["base"] == base}
    return dict(sorted(found.items()))


def _whole(quality: float) -> int | None:
    """`quality` as a rung number when it is a whole number (3 and 3.0 alike), else None."""
    return int(quality) if float(quality).is_integer() else None


def _quality_range_message(name: str, quality: float, rungs: dict[int, str]) -> str:
    # `-m image-codec --quality 3` picked a rung before image-codec itself was served: point at the rung.
    whole = _whole(quality)
    rung = rungs.get(whole) if whole is not None else None
    hint = f" (for the fixed-rate rung, use -m {rung})" if rung else ""
    return f"--quality of {name}, a served codec, is a variable-rate quality in [0, 1], not {quality:g}{hint}"


def require(info: VersionInfo, name: str, operation: str, input_kind: str, task: str | None = None) -> None:
    """Refuse a model whose input kind, operations or task do not fit the command."""
    if info.input_kind != input_kind:
        raise UnsupportedOptionError(f"{name} takes {info.input_kind} input; this command needs a {input_kind} model")
    if operation not in info.operations:
        offered = ", ".join(info.operations)
        raise UnsupportedOptionError(f"{name} does not offer {operation} (it offers {offered})")
    if task is not None and info.task != task:
        raise UnsupportedOptionError(f"{name} is a {info.task} model; this command needs a {task} model")
