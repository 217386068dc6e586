"""Models change without a restart: index, load and unload, in the three modes of AE_MODEL_CONTROL.

Modelled on NVIDIA Triton's model control (docs/model-control.md):
- `none`: the repository is read at start-up only; load and unload are refused, the index works.
- `explicit`: an admin loads and unloads models through the repository API. Unlike Triton's explicit
  mode, start-up still loads what the version policy names: a restarted worker must serve what its
  siblings serve without anyone calling load, and an empty service behind a load balancer is an outage.
- `poll`: every AE_POLL_INTERVAL_S each worker rescans the repository folder (in a worker thread):
  new models and versions load, removed ones unload, a version whose files changed reloads. A failure
  is recorded once per fingerprint of the model's files, not retried at every poll. The API's load and
  unload are refused, as Triton refuses them while polling.

With several workers (`ae-serve --workers N`), each worker is its own app with its own repository.
Polling workers converge by polling the same folder. In explicit mode the worker that received the call
applies it and records it in the shared control file (`service.model_control_sync`), which the others
check every CONTROL_CHECK_S: they follow within about that, plus their own load time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from service.config import Settings
from service.errors import ServiceError
from service.metrics import ServiceMetrics
from service.model import LoadedModel
from service.model_control_disk import ModelOnDisk, policy_fingerprint, scan_repository
from service.model_control_errors import ModelControlDisabledError, check_admin
from service.model_control_swap import ModelSwapper
from service.model_control_sync import Action, ControlFile
from service.repository import ModelRepository

logger = logging.getLogger(__name__)

# How often an explicit-mode worker looks at the control file (one `stat` when nothing changed).
CONTROL_CHECK_S = 1.0


@dataclass(frozen=True)
class IndexEntry:
    """One model version on disk or serving: state READY, UNAVAILABLE, LOADING or UNLOADING, and why."""

    name: str
    version: str
    state: str
    reason: str


class ModelControl:
    """The repository API of one worker, and its poll or control-file task."""

    def __init__(
        self,
        repository: ModelRepository,
        settings: Settings,
        metrics: ServiceMetrics,
        start: Callable[[LoadedModel], None],
        forget: Callable[[LoadedModel], None],
    ) -> None:
        self.repository = repository
        self.settings = settings
        self.metrics = metrics
        self.swapper = ModelSwapper(repository, settings, start, forget)
        # One load or unload at a time per worker: each can take a core for seconds.
        self._lock = asyncio.Lock()
        folder = settings.model_control_dir
        self._control = ControlFile(folder) if settings.model_control == "explicit" and folder else None
        self._applied: dict[str, int] = {}  # generation of the control file's order applied, per model
        self._seen: dict[str, object] = {}  # poll: the fingerprint last acted on, per model
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Adopt the versions start-up loaded; start polling, or apply and then watch the control file."""
        await self.swapper.adopt_loaded()
        if self.settings.model_control == "poll":
            on_disk = await asyncio.to_thread(scan_repository, self.settings.repository)
            self._seen = await asyncio.to_thread(self._fingerprints, on_disk)
            self._task = asyncio.get_running_loop().create_task(self._every(self.settings.poll_interval_s, self.rescan))
        elif self._control is not None:
            await self.follow_control_file()  # a late or respawned worker catches up before serving
            self._task = asyncio.get_running_loop().create_task(self._every(CONTROL_CHECK_S, self.follow_control_file))

    async def close(self) -> None:
        """Stop polling or watching; let drains in progress finish."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.swapper.close()

    # ------------------------------------------------------------------ the API

    def check_admin(self, authorization: str | None) -> None:
        """401 without a valid key, 403 for an inference key or without AE_ADMIN_KEYS configured."""
        check_admin(self.settings, authorization)

    async def index(self, ready_only: bool = False) -> list[IndexEntry]:
        """Every model version on disk or serving, with its state and, when not READY, why."""
        on_disk = await asyncio.to_thread(scan_repository, self.settings.repository)
        entries = [
            self._entry(name, version)
            for name in sorted({*on_disk, *self.repository.models})
            for version in sorted(
                {*(on_disk[name].folders if name in on_disk else ()), *self.repository.models.get(name, {})}
            )
        ]
        return [e for e in entries if e.state == "READY"] if ready_only else entries

    async def load(self, name: str) -> None:
        """(Re)load model `name` from disk (explicit mode); ModelLoadFailedError keeps the old versions serving."""
        self._require_explicit()
        async with self._lock:
            await self._counted("load", name, self.swapper.load(name))
            await self._share("load", name)

    async def unload(self, name: str) -> None:
        """Stop routing to every version of `name` (explicit mode); returns once their requests finished."""
        self._require_explicit()
        async with self._lock:
            stopped = await self._counted("unload", name, self.swapper.unload(name))
            await self._share("unload", name)
        await self.swapper.drain(stopped)

    # ------------------------------------------------------------------ the index

    def _entry(self, name: str, version: int) -> IndexEntry:
        repo, key = self.repository, (name, version)
        if version in repo.models.get(name, {}):
            return IndexEntry(name, str(version), "READY", "")
        if key in self.swapper.loading:
            return IndexEntry(name, str(version), "LOADING", "")
        if key in self.swapper.unloading:
            return IndexEntry(name, str(version), "UNLOADING", "")
        return IndexEntry(name, str(version), "UNAVAILABLE", self._reason(name, version))

    def _reason(self, name: str, version: int) -> str:
        repo = self.repository
        if name in repo.unloaded:
            return "unloaded"
        failure = next((f for f in repo.failures if f.model == name and f.version in (version, None)), None)
        if failure is not None:
            return failure.reason
        if name in repo.rules:
            return f"not loaded by the version policy ({repo.rules[name]})"
        return (
            "not loaded (new on disk)" if self.settings.model_control != "none" else "not loaded (found after start-up)"
        )

    # ------------------------------------------------------------------ modes

    def _require_explicit(self) -> None:
        mode = self.settings.model_control
        if mode == "explicit":
            return
        why = "it polls the repository folder instead" if mode == "poll" else "models change only at start-up"
        raise ModelControlDisabledError(
            f"load and unload need AE_MODEL_CONTROL=explicit; this service runs with AE_MODEL_CONTROL={mode} ({why})"
        )

    async def _counted(self, action: Action, name: str, work: Awaitable[list[LoadedModel] | None]) -> list[LoadedModel]:
        try:
            result = await work
        except ServiceError:
            self.metrics.model_control.labels(name, action, "failure").inc()
            raise
        self.metrics.model_control.labels(name, action, "success").inc()
        return result or []

    async def _share(self, action: Action, name: str) -> None:
        """Record a load or unload this worker applied, for the other workers (explicit mode, several workers)."""
        if self._control is not None:
            self._applied[name] = await asyncio.to_thread(self._control.record, name, action)

    async def _apply(self, action: Action, name: str, on_disk: ModelOnDisk | None = None) -> None:
        """Apply an action that no API call waits for (poll, control file): failures are logged and counted."""
        try:
            if action == "load":
                await self._counted(action, name, self.swapper.load(name, on_disk))
            else:
                # Drained in the background: the next change need not wait for this model's requests.
                self.swapper.drain_later(await self._counted(action, name, self.swapper.unload(name)))
        except ServiceError as error:
            logger.error("model control: %s of model %s failed: %s", action, name, error.message)

    async def follow_control_file(self) -> None:
        """Apply the control file's orders this worker has not applied yet."""
        assert self._control is not None
        orders = await asyncio.to_thread(self._control.read_if_changed)
        async with self._lock:
            for name, order in sorted((orders or {}).items()):
                if order.generation > self._applied.get(name, 0):
                    self._applied[name] = order.generation
                    logger.info(
                        "model control: %s of model %s (control file generation %d)",
                        order.action,
                        name,
                        order.generation,
                    )
                    await self._apply(order.action, name)

    async def rescan(self) -> None:
        """Poll mode: load what is new or changed on disk, unload what is gone."""
        on_disk = await asyncio.to_thread(scan_repository, self.settings.repository)
        now = await asyncio.to_thread(self._fingerprints, on_disk)
        async with self._lock:
            for name, fingerprint in sorted(now.items()):
                if self._seen.get(name) != fingerprint:
                    self._seen[name] = fingerprint  # acted on once, whatever the outcome
                    await self._apply("load", name, on_disk[name])
            for name in sorted(set(self._seen) - set(now)):
                del self._seen[name]
                await self._apply("unload", name)

    def _fingerprints(self, on_disk: dict[str, ModelOnDisk]) -> dict[str, object]:
        """Per model: its files' fingerprint with the policy file's (a changed policy reloads every model)."""
        policy = policy_fingerprint(self.settings)
        return {name: (policy, model.fingerprint()) for name, model in on_disk.items()}

    @staticmethod
    async def _every(seconds: float, work: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await work()
            except Exception:  # one failed round must not end the task: the next one may succeed
                logger.exception("model control: a periodic check failed")
