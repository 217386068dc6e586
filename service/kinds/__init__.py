"""Model kinds and their handlers: the registry asks each kind, in order, whether it serves a model.

Adding a kind means one new module with a `ModelHandler` subclass, and its place in `KINDS`.
"""

from __future__ import annotations

from service.config import Settings
from service.kinds.base import ModelHandler
from service.kinds.codec import CodecHandler
from service.kinds.image import ImageHandler
from service.kinds.sequence import SequenceHandler
from service.model import LoadedModel

# First match wins: a codec takes images too, so it is asked before the plain image kind.
KINDS: tuple[type[ModelHandler], ...] = (CodecHandler, ImageHandler, SequenceHandler)


def handler_for(model: LoadedModel, settings: Settings) -> ModelHandler:
    """The handler of the first kind that serves `model`."""
    for kind in KINDS:
        if kind.serves(model):
            return kind(model, settings)
    raise ValueError(f"no handler serves model {model.manifest.name!r} (input kind {model.manifest.input.kind!r})")
