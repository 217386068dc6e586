"""What the running app holds: settings, the repository, and readiness."""

from __future__ import annotations

from dataclasses import dataclass

from service.config import Settings
from service.repository import ModelRepository


@dataclass
class ServiceState:
    """Mutable app state; `ready` is true only between a completed warm-up and the start of shutdown."""

    settings: Settings
    repository: ModelRepository | None = None
    ready: bool = False
    load_error: str | None = None
