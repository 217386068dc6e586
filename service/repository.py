"""The model repository: `NAME/VERSION/model.json` + graphs -> loaded, verified, warmed models.

Which versions load is the version policy's choice (`service.policy`: `models/policy.toml`, or the
built-in latest-1-but-codecs-keep-all); the others stay on disk, listed as not loaded.

Loading, in order, for each version folder the policy names:
1. validate `model.json` against the schema;
2. check every graph file's sha256 against the manifest;
3. create an ONNX Runtime session per graph and read back the providers in use;
4. run one warm-up inference per graph (the first run allocates and, on GPU, compiles kernels);
5. attach the handler of the model's kind (`service.kinds`), which serves its requests.
A failure skips that version: the reason goes to the log and to `GET /v1/models` (authenticated),
and `/health/ready` answers 503 until it is fixed, unless `AE_ALLOW_PARTIAL` lets the rest serve.
A failed default version never silently hands its requests to an older one (see `default_version`).

Versions the policy leaves on disk can still be loaded one at a time, the same way, when a stream names
one (`service.lazy`); while loaded they serve and are listed like the others but never become a default.
"""

from __future__ import annotations

import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from service.codecs.entropy import EntropyTables, LatentCoder
from service.codecs.hyperprior import HyperpriorEntropyModel
from service.config import Settings
from service.engine import OnnxEngine, available_providers
from service.errors import ModelUnavailableError, NotFoundError, ServiceError
from service.gpu_memory import runs_on_cuda
from service.kinds import handler_for
from service.manifest import GRAY_PREFIX, MANIFEST_FILE, EntropyModelSpec, Manifest, load_manifest, sha256_of
from service.model import LoadedModel
from service.policy import POLICY_FILE, VersionPolicy, VersionPolicyError, VersionRule, load_policy

logger = logging.getLogger(__name__)


# What the repository says about serving: every version the policy names serves, some failed but
# AE_ALLOW_PARTIAL lets the rest serve, some failed (not ready), or nothing serves at all.
Health = Literal["ready", "partial", "failed", "no_models"]


class ModelLoadError(RuntimeError):
    """A version folder that cannot be served, with the reason."""


@dataclass(frozen=True)
class LoadFailure:
    """A model or version the version policy named that failed to load.

    `reason` may hold file names and exception text: it goes to the log and to the authenticated
    `GET /v1/models`, never to the open `/health/ready`, which shows `key` only.
    """

    model: str
    version: int | None  # None: the model as a whole (its rule loads none of the versions on disk)
    reason: str

    @property
    def key(self) -> str:
        """`NAME/VERSION`, or `NAME` for a failure of the whole model."""
        return self.model if self.version is None else f"{self.model}/{self.version}"


def version_folders(model_folder: Path) -> list[Path]:
    """The integer version folders of `models/NAME`, lowest first (by default the service serves the last)."""
    versions = [p for p in model_folder.glob("*") if p.is_dir() and p.name.isdigit()]
    return sorted(versions, key=lambda p: int(p.name))


def latest_version_folder(model_folder: Path) -> Path:
    """The highest version folder of `models/NAME`: the one served when no version is named."""
    versions = version_folders(model_folder)
    if not versions:
        raise FileNotFoundError(f"no model versions under {model_folder}")
    return versions[-1]


def _warmup_feeds(manifest: Manifest, role: str) -> dict[str, np.ndarray]:
    spec = manifest.input
    if spec.kind == "image":
        height, width = spec.fixed_size or (spec.stride_multiple, spec.stride_multiple)
        channels = 1 if role.startswith(GRAY_PREFIX) else spec.channels
        image = np.zeros((1, channels, height, width), np.float32)
        if role.removeprefix(GRAY_PREFIX) != "decoder":
            return {"image": image}
        shape = [d if isinstance(d, int) else 1 for d in manifest.latent.shape]
        return {"latent": np.zeros((1, *shape), np.float32)}
    lengths = np.array([max(spec.min_length, 8)], np.int64)
    if role == "decoder":
        size = [d for d in manifest.latent.shape if isinstance(d, int)]
        return {"latent": np.zeros((1, *size), np.float32), "lengths": lengths}
    return {"sequences": np.zeros((1, int(lengths[0]), spec.features), np.float32), "lengths": lengths}


def runs_fp16(manifest: Manifest, settings: Settings) -> bool:
    """Whether a version runs its fp16 graphs (AE_PRECISION; auto: only where sessions run on CUDA).

    A version without an fp16 variant always runs fp32; one with it runs fp16 for every graph the
    variant holds (the rest stay fp32).
    """
    if manifest.fp16 is None or settings.precision == "fp32":
        return False
    if settings.precision == "fp16":
        return True
    return runs_on_cuda(available_providers(settings.providers))


def load_version(folder: Path, settings: Settings) -> LoadedModel:
    """Validate, verify, load and warm one version folder; raises ModelLoadError with the reason."""
    try:
        manifest = load_manifest(folder)
    except FileNotFoundError as error:
        raise ModelLoadError(f"no {MANIFEST_FILE}") from error
    except ValueError as error:  # pydantic.ValidationError and JSON errors are ValueErrors
        raise ModelLoadError(f"invalid {MANIFEST_FILE}: {error}") from error
    if manifest.version != int(folder.name) or manifest.name != folder.parent.name:
        raise ModelLoadError(
            f"manifest says {manifest.name}/{manifest.version} but lives in {folder.parent.name}/{folder.name}"
        )
    engines: dict[str, OnnxEngine] = {}
    half = runs_fp16(manifest, settings)
    for role, graph in manifest.graphs.items():
        if half and manifest.fp16 is not None and role in manifest.fp16.graphs:
            graph = manifest.fp16.graphs[role]
        path = _verified(folder, graph.file, graph.sha256, "graph file")
        try:
            engine = OnnxEngine(path, settings, threads=settings.intra_op_threads_for(manifest.input.kind))
            engine.run(_warmup_feeds(manifest, role))
        except Exception as error:  # ONNX Runtime raises its own untyped errors
            raise ModelLoadError(f"{graph.file} failed to load or warm up: {error}") from error
        engines[role] = engine
    tables = _load_tables(folder, manifest, manifest.entropy_model)
    model = LoadedModel(manifest, engines, tables, _load_tables(folder, manifest, manifest.gray_entropy_model))
    model.precision = "fp16" if half else "fp32"
    try:
        model.handler = handler_for(model, settings)
    except ValueError as error:
        raise ModelLoadError(str(error)) from error
    return model


def _verified(folder: Path, name: str, sha256: str, what: str) -> Path:
    """The path of a file the manifest lists, once it exists and its sha256 matches."""
    path = folder / name
    if not path.is_file():
        raise ModelLoadError(f"missing {what} {name}")
    if sha256_of(path) != sha256:
        raise ModelLoadError(f"sha256 of {name} does not match the manifest")
    return path


def _load_tables(folder: Path, manifest: Manifest, spec: EntropyModelSpec | None) -> LatentCoder | None:
    if spec is None:
        return None
    path = _verified(folder, spec.file, spec.sha256, "entropy tables")
    tables: LatentCoder
    try:
        if spec.transforms is not None and spec.transforms_sha256 is not None:  # a mean-scale hyperprior
            transforms = _verified(folder, spec.transforms, spec.transforms_sha256, "hyper transforms")
            tables = HyperpriorEntropyModel(path, transforms)
        else:
            tables = EntropyTables(path)
    except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile) as error:
        raise ModelLoadError(f"invalid entropy tables {spec.file}: {error}") from error
    if tables.channels != manifest.latent.shape[0]:
        raise ModelLoadError(
            f"entropy tables cover {tables.channels} channels, the latent has {manifest.latent.shape[0]}"
        )
    return tables


@dataclass
class ModelRepository:
    """The servable model versions by name and version, and the versions the policy leaves on disk."""

    models: dict[str, dict[int, LoadedModel]] = field(default_factory=dict)
    # What failed to load, and the versions the policy set out to load (on disk) per model: the
    # highest of those is the default, whether or not it loaded.
    failures: list[LoadFailure] = field(default_factory=list)
    chosen: dict[str, list[int]] = field(default_factory=dict)
    # Versions on disk that the version policy does not load, and the rule each model was loaded by.
    not_loaded: dict[str, list[int]] = field(default_factory=dict)
    rules: dict[str, VersionRule] = field(default_factory=dict)
    # The folders of the compression models' versions the policy leaves on disk, fixed at start-up: what
    # `service.lazy` may load for the streams naming them.
    # One of them in `models` is lazily loaded (and out of `not_loaded` until evicted).
    left_on_disk: dict[str, dict[int, Path]] = field(default_factory=dict)
    allow_partial: bool = False
    # Models an admin unloaded (`service.model_control`): not served, not counted against readiness.
    unloaded: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, settings: Settings) -> ModelRepository:
        """Load the `NAME/VERSION` folders under the repository folder that the version policy names."""
        root = settings.repository
        if not root.is_dir():
            raise ModelLoadError(f"model repository {root} is not a directory")
        policy = _policy(settings)
        on_disk = {folder.name: version_folders(folder) for folder in sorted(root.glob("*")) if folder.is_dir()}
        on_disk = {name: folders for name, folders in on_disk.items() if folders}
        for name in sorted(set(policy.models) - set(on_disk)):
            logger.warning("version policy names model %s, which is not in %s", name, root)
        if not on_disk:
            logger.error("model repository %s holds no models: not ready", root)
        repo = cls(allow_partial=settings.allow_partial)
        for name, folders in on_disk.items():
            repo._load_model(name, folders, policy, settings)
        return repo

    def _load_model(self, name: str, folders: list[Path], policy: VersionPolicy, settings: Settings) -> None:
        task = _task_of(folders)
        rule = policy.rule_for(name, task)
        self.rules[name] = rule
        on_disk = [int(folder.name) for folder in folders]
        chosen = self.chosen[name] = rule.select(on_disk)
        if missing := rule.missing(on_disk):
            logger.warning("version policy of model %s (%s) names versions not on disk: %s", name, rule, missing)
        if skipped := [v for v in on_disk if v not in chosen]:
            self.not_loaded[name] = skipped
            if task == "compress":  # only streams name versions, and only compression models write them
                self.left_on_disk[name] = {int(f.name): f for f in folders if int(f.name) in skipped}
            logger.info("model %s: versions %s on disk are not loaded (version policy: %s)", name, skipped, rule)
        if not chosen:
            self._fail(LoadFailure(name, None, f"version policy ({rule}) loads none of the versions on disk {on_disk}"))
        for folder in folders:
            if int(folder.name) in chosen:
                self._load_version(folder, settings)

    def _load_version(self, folder: Path, settings: Settings) -> None:
        key = f"{folder.parent.name}/{folder.name}"
        try:
            model = load_version(folder, settings)
        except ModelLoadError as error:
            self._fail(LoadFailure(folder.parent.name, int(folder.name), str(error)))
            return
        self.models.setdefault(model.manifest.name, {})[model.manifest.version] = model
        logger.info("loaded model %s (task %s) on %s", key, model.manifest.task, model.providers)

    def _fail(self, failure: LoadFailure) -> None:
        logger.error("model %s failed to load, not serving it: %s", failure.key, failure.reason)
        self.failures.append(failure)

    def loaded(self) -> list[LoadedModel]:
        """Every loaded model version."""
        return [model for versions in self.models.values() for model in versions.values()]

    def unserved(self) -> list[LoadFailure]:
        """The failures that leave a policy-named version without anything serving it.

        A reload (`service.model_control`) that fails records its failure in `failures` while the old
        versions keep serving and stay the policy's choice: a failed version the policy has not chosen
        is not unserved, so readiness and the default version stay as they were.
        """
        return [
            f
            for f in self.failures
            if f.version is None
            or (f.version in self.chosen.get(f.model, []) and f.version not in self.models.get(f.model, {}))
        ]

    def health(self) -> Health:
        """`ready`, `partial` (failures, allowed), or why not: `failed`, or `no_models` loaded at all."""
        unserved = self.unserved()
        if unserved and not self.allow_partial:
            return "failed"
        # Lazily loaded versions do not count: readiness is the policy's versions only. Unloading every
        # model on purpose is not a failure to load one.
        served = any(v in self.chosen.get(name, []) for name, versions in self.models.items() for v in versions)
        if not served and not self.unloaded:
            return "no_models"
        return "partial" if unserved else "ready"

    def default_version(self, name: str) -> int | None:
        """The version a request without one gets: the highest the policy loads, if it loaded.

        When that one failed, no older version takes its place silently: None (requests without a
        version are 503) unless AE_ALLOW_PARTIAL, then the highest version that did load.
        """
        chosen = self.chosen.get(name, [])
        # Only versions the policy loads: a lazily loaded one serves the streams naming it, never the default.
        loaded = [v for v in self.models.get(name, {}) if v in chosen]
        if chosen and max(chosen) in loaded:
            return max(chosen)
        return max(loaded) if loaded and self.allow_partial else None

    def failed_versions(self, name: str) -> list[int]:
        """The versions of `name` not serving because they failed (at start-up, or a reload's new ones)."""
        served = self.models.get(name, {})
        return sorted({f.version for f in self.failures if f.model == name and f.version is not None} - set(served))

    def on_disk(self, name: str, version: int) -> bool:
        """Whether `name`/`version` is a version folder here: loaded, failed, or left on disk by the policy."""
        return (
            version in self.models.get(name, {})
            or version in self.not_loaded.get(name, [])
            or version in self.failed_versions(name)
        )

    def lazily_loadable(self, name: str, version: int) -> Path | None:
        """The folder of a version the policy leaves on disk and that is not loaded now, else None."""
        if version in self.models.get(name, {}):
            return None
        return self.left_on_disk.get(name, {}).get(version)

    def is_lazily_loaded(self, model: LoadedModel) -> bool:
        """Whether `model` is a version the policy leaves out, loaded on demand (evictable)."""
        m = model.manifest
        return m.version in self.left_on_disk.get(m.name, {})

    def add_lazily_loaded(self, model: LoadedModel) -> None:
        """Serve and list a lazily loaded version (it leaves `not_loaded` meanwhile)."""
        m = model.manifest
        self.models.setdefault(m.name, {})[m.version] = model
        self.not_loaded[m.name] = [v for v in self.not_loaded.get(m.name, []) if v != m.version]

    def drop_lazily_loaded(self, model: LoadedModel) -> None:
        """Stop routing to an evicted lazily loaded version: it is listed as not loaded again."""
        m = model.manifest
        versions = self.models.get(m.name, {})
        if versions.get(m.version) is model:
            del versions[m.version]
        if not versions:
            self.models.pop(m.name, None)
        self.not_loaded[m.name] = sorted({*self.not_loaded.get(m.name, []), m.version})

    def swap_model(
        self, name: str, rule: VersionRule, versions: dict[int, LoadedModel], on_disk: dict[int, Path]
    ) -> list[LoadedModel]:
        """Serve `versions` (what `rule` chose of `on_disk`) as model `name` from now on, in one step.

        Returns the versions it displaces, for the caller to drain and stop. Lazily loaded versions stay
        with `service.lazy`, which stops them; the model's earlier failures are forgotten.
        """
        old = self.models.get(name, {})
        lazy = {v: m for v, m in old.items() if self.is_lazily_loaded(m) and v not in versions}
        displaced = [m for v, m in old.items() if not self.is_lazily_loaded(m) and versions.get(v) is not m]
        self.rules[name], self.chosen[name] = rule, sorted(versions)
        skipped = sorted(v for v in on_disk if v not in versions)
        self.not_loaded[name] = [v for v in skipped if v not in lazy]
        if self.not_loaded[name] == []:
            del self.not_loaded[name]
        task = next(iter(versions.values())).manifest.task if versions else None
        self.left_on_disk[name] = {v: on_disk[v] for v in skipped} if task == "compress" else {}
        self.failures = [f for f in self.failures if f.model != name]
        self.unloaded.discard(name)
        self.models[name] = {**lazy, **versions}
        return displaced

    def remove_model(self, name: str) -> list[LoadedModel]:
        """Stop routing to every version of `name` at once (unloaded on purpose); returns those to stop.

        Lazily loaded versions are left to `service.lazy` to stop, but no new one loads.
        """
        versions = self.models.pop(name, {})
        to_stop = [m for m in versions.values() if not self.is_lazily_loaded(m)]
        for mapping in (self.chosen, self.not_loaded, self.left_on_disk):
            mapping.pop(name, None)
        self.failures = [f for f in self.failures if f.model != name]
        self.unloaded.add(name)
        return to_stop

    def record_failure(self, failure: LoadFailure) -> None:
        """A reload's failure: logged and listed, replacing an earlier one of the same version."""
        self.failures = [f for f in self.failures if f.key != failure.key]
        self._fail(failure)

    def get(self, name: str, version: int | None = None) -> LoadedModel:
        """A model by name, the default version unless one is given; 404 unknown, 503 failed to load."""
        versions = self.models.get(name, {})
        wanted = self.default_version(name) if version is None else version
        if wanted is not None and wanted in versions:
            return versions[wanted]
        raise self._not_served(name, version)

    def _not_served(self, name: str, version: int | None) -> ServiceError:
        if name in self.unloaded:
            return ModelUnavailableError(f"model {name!r} is unloaded (model control); an admin may load it again")
        versions = self.models.get(name, {})
        known = ", ".join(str(v) for v in sorted(versions)) or "none"
        failed = self.failed_versions(name)
        if not versions and not failed:
            if self.not_loaded.get(name):
                return NotFoundError(f"model {name!r} exists, but the version policy loads none of its versions")
            return NotFoundError(f"unknown model {name!r}; see GET /v1/models")
        if version is None:  # then the default failed (failed_versions says which, GET /v1/models why)
            default = max(self.chosen.get(name) or failed)
            return ModelUnavailableError(
                f"model {name!r}: its default version {default} failed to load; loaded versions: {known}"
            )
        if version in failed:
            return ModelUnavailableError(f"model {name!r} version {version} failed to load; loaded versions: {known}")
        if version in self.not_loaded.get(name, []):
            return NotFoundError(
                f"model {name!r} version {version} exists, but the version policy does not load it; "
                f"loaded versions: {known}"
            )
        return NotFoundError(f"model {name!r} has no version {version}; versions: {known}")


def rule_for(settings: Settings, name: str, folders: list[Path]) -> VersionRule:
    """The version policy's rule for one model, from the policy file as it is now (a reload reads it afresh)."""
    return _policy(settings).rule_for(name, _task_of(folders))


def _policy(settings: Settings) -> VersionPolicy:
    """The configured policy file, else the repository's `policy.toml`, else the built-in policy."""
    explicit = settings.version_policy
    path = explicit or settings.repository / POLICY_FILE
    try:
        policy = load_policy(path, required=explicit is not None)
    except VersionPolicyError as error:
        raise ModelLoadError(str(error)) from error
    logger.info("version policy: %s", path if path.is_file() else "built-in (no policy file)")
    return policy


def _task_of(folders: list[Path]) -> str | None:
    """The task of a model's highest version with a readable manifest (the policy may depend on it)."""
    for folder in reversed(folders):
        try:
            return load_manifest(folder).task
        except (OSError, ValueError):  # the version's own load reports why
            continue
    return None
