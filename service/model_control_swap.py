"""Loading and unloading one model while requests keep flowing: the mechanics under `ModelControl`.

Load: the versions the policy names (read afresh) are compared with what serves; those new or whose
files changed load in a worker thread exactly as at start-up (`repository.load_version`), the others
are kept as they are. Only once every one of them loaded are their handlers started (on the event loop)
and the model swapped in one step (`ModelRepository.swap_model`); the displaced versions drain in the
background. One failure and nothing changes: the old versions keep serving, the failure is recorded.

Unload: routing stops for every version at once, then each drains and stops (see
`service.model_control_drain`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from service.config import Settings
from service.errors import NotFoundError
from service.model import LoadedModel
from service.model_control_disk import Fingerprint, ModelOnDisk, folder_fingerprint, scan_model
from service.model_control_drain import InFlight
from service.model_control_errors import ModelLoadFailedError
from service.repository import LoadFailure, ModelLoadError, ModelRepository, load_version, rule_for

logger = logging.getLogger(__name__)

Key = tuple[str, int]


class _VersionLoadError(Exception):
    def __init__(self, version: int, reason: str) -> None:
        super().__init__(reason)
        self.version, self.reason = version, reason


class ModelSwapper:
    """Loads and unloads whole models of `repository`; the caller runs one operation at a time.

    `start` starts a loaded version's handler and attaches its metrics; `forget` is told of a version
    that no longer serves (its `ae_model_loaded` series goes to 0).
    """

    def __init__(
        self,
        repository: ModelRepository,
        settings: Settings,
        start: Callable[[LoadedModel], None],
        forget: Callable[[LoadedModel], None],
    ) -> None:
        self.repository = repository
        self.settings = settings
        self._start, self._forget = start, forget
        self.in_flight = InFlight()
        self.fingerprints: dict[Key, Fingerprint] = {}  # of the versions serving, as they were loaded
        self.loading: set[Key] = set()
        self.unloading: set[Key] = set()
        self._draining: set[asyncio.Task[bool]] = set()

    async def adopt_loaded(self) -> None:
        """Take over the versions loaded at start-up (before any request): track their requests, fingerprint them."""
        keys = []
        for model in self.repository.loaded():
            self.in_flight.track(model)
            keys.append((model.manifest.name, model.manifest.version))
        root = self.settings.repository
        prints = await asyncio.to_thread(lambda: [folder_fingerprint(root / name / str(v)) for name, v in keys])
        self.fingerprints = dict(zip(keys, prints, strict=True))

    async def load(self, name: str, on_disk: ModelOnDisk | None = None) -> None:
        """(Re)load `name` from disk; 404 when it is not there, ModelLoadFailedError when a version fails."""
        if on_disk is None:
            on_disk = await asyncio.to_thread(scan_model, self.settings.repository, name)
        if on_disk is None:
            raise NotFoundError(f"no model {name!r} in the model repository (no NAME/VERSION folder)")
        try:
            rule = await asyncio.to_thread(rule_for, self.settings, name, list(on_disk.folders.values()))
        except ModelLoadError as error:
            raise self._failed(name, None, str(error)) from error
        chosen = rule.select(sorted(on_disk.folders))
        if not chosen:
            raise self._failed(
                name, None, f"version policy ({rule}) loads none of the versions {sorted(on_disk.folders)}"
            )
        keep = self._unchanged(name, chosen, on_disk)
        todo = [v for v in chosen if v not in keep]
        self.loading |= {(name, v) for v in todo}
        try:
            fresh = await asyncio.to_thread(self._load_versions, on_disk, todo)
        except _VersionLoadError as failure:
            raise self._failed(name, failure.version, failure.reason) from None
        finally:
            self.loading -= {(name, v) for v in todo}
        for model in fresh.values():
            self._start(model)  # on the event loop: the batchers belong to the running loop
            self.in_flight.track(model)
        displaced = self.repository.swap_model(name, rule, {**keep, **fresh}, on_disk.folders)
        self.fingerprints = {k: f for k, f in self.fingerprints.items() if k[0] != name}
        self.fingerprints |= {(name, v): on_disk.fingerprints[v] for v in chosen}
        self._retire(displaced, still_listed=set(chosen))
        logger.info("model %s: serving versions %s (loaded %s, kept %s)", name, chosen, todo, sorted(keep))

    def _unchanged(self, name: str, chosen: list[int], on_disk: ModelOnDisk) -> dict[int, LoadedModel]:
        """The serving versions among `chosen` whose files are as they were when they loaded."""
        serving = self.repository.models.get(name, {})
        return {
            v: serving[v]
            for v in chosen
            if v in serving
            and not self.repository.is_lazily_loaded(serving[v])
            and self.fingerprints.get((name, v)) == on_disk.fingerprints[v]
        }

    def _load_versions(self, on_disk: ModelOnDisk, versions: list[int]) -> dict[int, LoadedModel]:
        """In a worker thread: load and warm each version; the first failure abandons them all."""
        loaded = {}
        for version in versions:
            try:
                loaded[version] = load_version(on_disk.folders[version], self.settings)
            except ModelLoadError as error:
                raise _VersionLoadError(version, str(error)) from error
        return loaded

    def _failed(self, name: str, version: int | None, reason: str) -> ModelLoadFailedError:
        failure = LoadFailure(name, version, reason)
        self.repository.record_failure(failure)
        serving = sorted(self.repository.models.get(name, {}))
        return ModelLoadFailedError(
            f"loading model {failure.key} failed: {reason}; "
            f"serving as before ({'versions ' + str(serving) if serving else 'no version'})"
        )

    async def unload(self, name: str) -> list[LoadedModel]:
        """Stop routing to every version of `name` now; returns them (drain them with `drain`)."""
        repo = self.repository
        known = name in repo.models or name in repo.rules or any(f.model == name for f in repo.failures)
        if not known and await asyncio.to_thread(scan_model, self.settings.repository, name) is None:
            raise NotFoundError(f"no model {name!r} in the model repository")
        stopped = repo.remove_model(name)
        self.fingerprints = {k: f for k, f in self.fingerprints.items() if k[0] != name}
        for model in stopped:
            self._forget(model)
        logger.info("model %s unloaded: versions %s stop once their requests finish", name, _versions(stopped))
        return stopped

    async def drain(self, models: list[LoadedModel]) -> None:
        """Wait for `models` to finish their requests and stop."""
        await asyncio.gather(*(self._drain_later(m) for m in models))

    def drain_later(self, models: list[LoadedModel]) -> None:
        """Let `models` finish their requests and stop, in the background."""
        for model in models:
            self._drain_later(model)

    def _retire(self, displaced: list[LoadedModel], still_listed: set[int]) -> None:
        for model in displaced:
            if model.manifest.version not in still_listed:  # else its series now belongs to the new one
                self._forget(model)
            self._drain_later(model)

    def _drain_later(self, model: LoadedModel) -> asyncio.Task[bool]:
        key = (model.manifest.name, model.manifest.version)
        self.unloading.add(key)
        timeout = self.settings.request_timeout_s + self.settings.body_read_timeout_s
        task = asyncio.get_running_loop().create_task(self.in_flight.drain_and_stop(model, timeout))
        self._draining.add(task)

        def done(task: asyncio.Task[bool]) -> None:
            self._draining.discard(task)
            self.unloading.discard(key)

        task.add_done_callback(done)
        return task

    async def close(self) -> None:
        """At shutdown: let the drains finish (they are bounded by the request timeout)."""
        await asyncio.gather(*self._draining, return_exceptions=True)


def _versions(models: list[LoadedModel]) -> list[int]:
    return sorted(m.manifest.version for m in models)
