"""Draining a version that no longer receives requests: those in flight on it finish, then its batchers stop.

The batchers count their admitted requests for the metrics through the `on_depth` hook; `InFlight` chains
its own count onto that hook, so it knows, per version, how many requests are between admission and
answer. A request may have looked the version up just before it stopped being routed to and still be
reading its body: it is admitted a moment later. So a version is stopped only once it has been idle
for `SETTLE_S` in a row, and in any case after the request timeout (a request past it has failed anyway).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from service.model import LoadedModel

logger = logging.getLogger(__name__)

# How long a version must stay idle before it stops: covers the step from lookup to admission.
SETTLE_S = 0.5
_CHECK_EVERY_S = 0.05
DepthHook = Callable[[int], None] | None


@dataclass
class _Count:
    value: int = 0


@dataclass
class _Tracked:
    model: LoadedModel
    counts: list[_Count] = field(default_factory=list)


class InFlight:
    """Admitted, unanswered requests per tracked version (tracked from before it receives any)."""

    def __init__(self) -> None:
        # By id: LoadedModel is a dataclass compared by value, so not hashable; the entry keeps it alive.
        self._tracked: dict[int, _Tracked] = {}

    def track(self, model: LoadedModel) -> None:
        """Count `model`'s requests from now on (after its metrics hooks are attached: this chains onto them)."""
        tracked = self._tracked[id(model)] = _Tracked(model)
        for batcher in model.handler.batchers.values():
            count = _Count()
            previous = batcher.on_depth

            def on_depth(delta: int, count: _Count = count, previous: DepthHook = previous) -> None:
                count.value += delta
                if previous is not None:
                    previous(delta)

            batcher.on_depth = on_depth
            tracked.counts.append(count)

    def idle(self, model: LoadedModel) -> bool:
        """Whether no request is admitted on, or queued for, any of `model`'s graphs."""
        tracked = self._tracked.get(id(model))
        counts = tracked.counts if tracked is not None else []
        return all(c.value == 0 for c in counts) and all(b.queued == 0 for b in model.handler.batchers.values())

    async def drain_and_stop(self, model: LoadedModel, timeout_s: float) -> bool:
        """Wait until `model` has been idle for SETTLE_S (at most `timeout_s`), then stop its batchers.

        Returns whether it drained; a version still busy at the timeout is stopped anyway (its queued
        requests fail as the batchers stop, as at shutdown).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        idle_since: float | None = None
        drained = False
        while (now := loop.time()) < deadline:
            if not self.idle(model):
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= SETTLE_S:
                drained = True
                break
            await asyncio.sleep(_CHECK_EVERY_S)
        m = model.manifest
        if not drained:
            logger.warning("model %s/%d still busy after %g s: stopping it anyway", m.name, m.version, timeout_s)
        await model.handler.stop()
        self._tracked.pop(id(model), None)
        logger.info("model %s/%d stopped", m.name, m.version)
        return drained
