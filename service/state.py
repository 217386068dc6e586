"""What the running app holds: settings, the repository, and readiness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from service.config import Settings
from service.repository import Health, ModelRepository

Readiness = Health | Literal["loading", "stopping"]


@dataclass
class ServiceState:
    """Mutable app state; `ready` is true only between a completed warm-up and the start of shutdown."""

    settings: Settings
    repository: ModelRepository | None = None
    ready: bool = False

    def readiness(self) -> Readiness:
        """What `/health/ready` reports; only `ready` and `partial` (AE_ALLOW_PARTIAL) are ready.

        Readiness is for routing traffic: while it is `failed`, the versions that did load still
        answer requests addressed to them.
        """
        if self.repository is None:
            return "loading"
        if not self.ready:
            return "stopping"
        return self.repository.health()
