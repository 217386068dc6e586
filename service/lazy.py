"""Versions loaded on first use: a stored stream keeps decoding after the version policy moves on.

A compressed stream names the model version that wrote it. When the version policy no longer loads that
version (say `latest = 1` after an upgrade) but its folder is still on disk, the first request needing it
loads it here, exactly as start-up does (`repository.load_version`: manifest, sha256 of every file, session,
warm-up), in a worker thread; concurrent first requests wait for that one load. At most
`AE_LAZY_MAX_VERSIONS` such versions stay loaded per worker; loading one more evicts the least recently
used, whose requests in flight finish on it before its batchers stop. Readiness never depends on them.

A version that fails verification stays failed until the service restarts or reloads (as at start-up):
each request naming it answers 503, and the reason goes to the log only.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from service.config import Settings
from service.errors import ModelUnavailableError
from service.model import LoadedModel
from service.repository import ModelLoadError, ModelRepository, load_version

logger = logging.getLogger(__name__)

Key = tuple[str, int]


@dataclass
class _Lazy:
    """A lazily loaded version and the requests using it now."""

    model: LoadedModel
    users: int = 0
    evicted: bool = False


class LazyVersions:
    """Loads, lends and evicts the versions the policy leaves on disk, on behalf of the streams naming them.

    `start` starts a loaded version's handler on the running loop (and attaches metrics); `forget` is told
    of an evicted one. Everything here runs on the event loop but the load itself.
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
        self.capacity = settings.lazy_max_versions
        self._start = start
        self._forget = forget
        self._loaded: OrderedDict[Key, _Lazy] = OrderedDict()  # least recently used first
        self._loading: dict[Key, asyncio.Task[_Lazy]] = {}
        self._waiting: dict[Key, int] = {}  # requests waiting for a version's load
        self._failed: set[Key] = set()
        # One load at a time: each takes a core for seconds, and streams naming many versions must not
        # multiply that (nor the memory of half-built sessions).
        self._one_load = asyncio.Lock()
        self._stopping: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def serving(self, name: str, version: int) -> AsyncIterator[LoadedModel]:
        """`name`/`version` for one request, loading it first if the policy left it on disk.

        A lazily loaded version is not stopped while the request holds it, even if it is evicted meanwhile.
        Unknown versions answer as `ModelRepository.get` does (404, or 503 for a failed one).
        """
        entry = await self._entry(name, version)
        if entry is None:
            yield self.repository.get(name, version)
            return
        try:
            yield entry.model
        finally:
            self._release(entry)

    def would_load(self, name: str, version: int) -> bool:
        """Whether serving `name`/`version` would start a load (or wait for one): the policy left it on disk."""
        key = (name, version)
        if key in self._loaded or key in self._failed or self.capacity == 0:
            return False
        return self.repository.lazily_loadable(name, version) is not None

    def loaded_keys(self) -> list[Key]:
        """The lazily loaded versions, least recently used first."""
        return list(self._loaded)

    async def _entry(self, name: str, version: int) -> _Lazy | None:
        """The lazy entry serving `name`/`version`, loaded if need be, with this request counted as its user.

        None for a version the policy loads (or unknown: the caller asks the repository). Counting happens
        with no await after the entry is known: another version's load could otherwise evict and stop it
        between the load finishing and this request waking up.
        """
        key = (name, version)
        if (entry := self._loaded.get(key)) is not None:
            self._loaded.move_to_end(key)
            entry.users += 1
            return entry
        if self.capacity == 0 or self.repository.lazily_loadable(name, version) is None:
            return None
        if key in self._failed:
            raise self._unavailable(key)
        task = self._loading.get(key)
        if task is None:
            task = self._loading[key] = asyncio.get_running_loop().create_task(self._load(key))
            task.add_done_callback(self._loaded_or_failed)
        # The load counts its waiters as users of the entry it makes, in the step that makes it.
        self._waiting[key] = self._waiting.get(key, 0) + 1
        try:
            # Shielded: a client that gives up must not cancel the load the others wait for.
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done() and not task.cancelled() and task.exception() is None:
                self._release(task.result())  # loaded and counted just as this request gave up
            elif key in self._waiting:
                self._waiting[key] -= 1
            raise

    def _release(self, entry: _Lazy) -> None:
        """One request done with a lazily loaded version; the last one out stops an evicted version."""
        entry.users -= 1
        if entry.evicted and entry.users == 0:
            self._stop_later(entry.model)

    def _loaded_or_failed(self, task: asyncio.Task[_Lazy]) -> None:
        key = next(k for k, t in self._loading.items() if t is task)
        del self._loading[key]
        if not task.cancelled():
            task.exception()  # retrieved here: every waiter may have gone

    async def _load(self, key: Key) -> _Lazy:
        try:
            return await self._load_one_at_a_time(key)
        except BaseException:
            self._waiting.pop(key, None)  # its waiters get the error: none of them holds the version
            raise

    async def _load_one_at_a_time(self, key: Key) -> _Lazy:
        name, version = key
        async with self._one_load:
            folder = self.repository.lazily_loadable(name, version)
            if folder is None:  # cannot happen while loads of a key are deduplicated; kept honest anyway
                raise self._unavailable(key)
            self._evict_down_to(self.capacity - 1)  # room first: the bound holds while the new one loads
            try:
                model = await asyncio.to_thread(load_version, folder, self.settings)
            except ModelLoadError as error:
                self._failed.add(key)
                logger.error("lazily loading model %s/%d failed, not serving it: %s", name, version, error)
                raise self._unavailable(key) from error
            self._start(model)
            entry = self._loaded[key] = _Lazy(model, users=self._waiting.pop(key, 0))
            self.repository.add_lazily_loaded(model)
            logger.info(
                "lazily loaded model %s/%d for a stream naming it (%d of at most %d such versions loaded)",
                name,
                version,
                len(self._loaded),
                self.capacity,
            )
            return entry

    def _evict_down_to(self, count: int) -> None:
        while len(self._loaded) > max(count, 0):
            key, entry = self._loaded.popitem(last=False)
            entry.evicted = True
            self.repository.drop_lazily_loaded(entry.model)
            self._forget(entry.model)
            logger.info("evicted lazily loaded model %s/%d (least recently used)", *key)
            if entry.users == 0:
                self._stop_later(entry.model)

    def _stop_later(self, model: LoadedModel) -> None:
        task = asyncio.get_running_loop().create_task(model.handler.stop())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def close(self) -> None:
        """At shutdown: wait for evicted versions' stops and loads in progress (the rest stops with the repository)."""
        for task in list(self._loading.values()):
            task.cancel()
        await asyncio.gather(*self._loading.values(), *self._stopping, return_exceptions=True)

    @staticmethod
    def _unavailable(key: Key) -> ModelUnavailableError:
        # The reason (file names, hashes) stays in the log, as for versions that fail at start-up.
        return ModelUnavailableError(f"model {key[0]!r} version {key[1]} could not be loaded; see the service log")
