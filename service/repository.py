"""The model repository: `NAME/VERSION/model.json` + graphs -> loaded, verified, warmed models.

Loading, in order, for each version folder:
1. validate `model.json` against the schema;
2. check every graph file's sha256 against the manifest;
3. create an ONNX Runtime session per graph and read back the providers in use;
4. run one warm-up inference per graph (the first run allocates and, on GPU, compiles kernels).
A failure skips that version with a logged reason, or stops start-up when `strict_models` is set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.codecs.bitstream import EntropyTables
from service.config import Settings
from service.engine import OnnxEngine
from service.errors import NotFoundError, UnsupportedOperationError
from service.manifest import GRAPH_FOR_OPERATION, MANIFEST_FILE, Manifest, load_manifest, sha256_of

logger = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """A version folder that cannot be served, with the reason."""


@dataclass
class LoadedModel:
    """A verified manifest and one engine per graph."""

    manifest: Manifest
    engines: dict[str, OnnxEngine]
    tables: EntropyTables | None = None

    @property
    def providers(self) -> list[str]:
        """Providers in use, merged over the graphs (CUDA first when any graph got it)."""
        merged: list[str] = []
        for engine in self.engines.values():
            merged += [p for p in engine.providers if p not in merged]
        return merged

    def require(self, operation: str) -> None:
        """409 `unsupported_operation` when the model does not offer the operation."""
        if operation not in self.manifest.operations:
            raise UnsupportedOperationError(
                f"model {self.manifest.name!r} does not support {operation!r}; "
                f"it supports {', '.join(self.manifest.operations)}"
            )

    def engine_for(self, operation: str) -> OnnxEngine:
        """The engine of the graph an operation runs (`encode` -> encoder, ...); 409 when absent."""
        role = GRAPH_FOR_OPERATION[operation]
        if role not in self.engines:
            self.require(operation)
            raise UnsupportedOperationError(f"model {self.manifest.name!r} has no {role} graph")
        return self.engines[role]


def version_folders(model_folder: Path) -> list[Path]:
    """The integer version folders of `models/NAME`, lowest first (the service serves the last)."""
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
        image = np.zeros((1, spec.channels, height, width), np.float32)
        if role != "decoder":
            return {"image": image}
        shape = [d if isinstance(d, int) else 1 for d in manifest.latent.shape]
        return {"latent": np.zeros((1, *shape), np.float32)}
    lengths = np.array([max(spec.min_length, 8)], np.int64)
    if role == "decoder":
        size = [d for d in manifest.latent.shape if isinstance(d, int)]
        return {"latent": np.zeros((1, *size), np.float32), "lengths": lengths}
    return {"sequences": np.zeros((1, int(lengths[0]), spec.features), np.float32), "lengths": lengths}


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
    for role, graph in manifest.graphs.items():
        path = _verified(folder, graph.file, graph.sha256, "graph file")
        try:
            engine = OnnxEngine(path, settings, threads=settings.intra_op_threads_for(manifest.input.kind))
            engine.run(_warmup_feeds(manifest, role))
        except Exception as error:  # ONNX Runtime raises its own untyped errors
            raise ModelLoadError(f"{graph.file} failed to load or warm up: {error}") from error
        engines[role] = engine
    return LoadedModel(manifest, engines, _load_tables(folder, manifest))


def _verified(folder: Path, name: str, sha256: str, what: str) -> Path:
    """The path of a file the manifest lists, once it exists and its sha256 matches."""
    path = folder / name
    if not path.is_file():
        raise ModelLoadError(f"missing {what} {name}")
    if sha256_of(path) != sha256:
        raise ModelLoadError(f"sha256 of {name} does not match the manifest")
    return path


def _load_tables(folder: Path, manifest: Manifest) -> EntropyTables | None:
    spec = manifest.entropy_model
    if spec is None:
        return None
    path = _verified(folder, spec.file, spec.sha256, "entropy tables")
    try:
        tables = EntropyTables(path)
    except (ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"invalid entropy tables {spec.file}: {error}") from error
    if tables.channels != manifest.latent.shape[0]:
        raise ModelLoadError(
            f"entropy tables cover {tables.channels} channels, the latent has {manifest.latent.shape[0]}"
        )
    return tables


@dataclass
class ModelRepository:
    """Every servable model version, by name and version."""

    models: dict[str, dict[int, LoadedModel]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Settings) -> ModelRepository:
        """Load every `NAME/VERSION` under the repository folder."""
        repo = cls()
        root = settings.repository
        if not root.is_dir():
            raise ModelLoadError(f"model repository {root} is not a directory")
        for folder in sorted(root.glob("*/*")):
            if not (folder.is_dir() and folder.name.isdigit()):
                continue
            key = f"{folder.parent.name}/{folder.name}"
            try:
                model = load_version(folder, settings)
            except ModelLoadError as error:
                if settings.strict_models:
                    raise ModelLoadError(f"{key}: {error}") from error
                logger.error("skipping model %s: %s", key, error)
                repo.failures[key] = str(error)
                continue
            repo.models.setdefault(model.manifest.name, {})[model.manifest.version] = model
            logger.info("loaded model %s (task %s) on %s", key, model.manifest.task, model.providers)
        return repo

    def get(self, name: str, version: int | None = None) -> LoadedModel:
        """A model by name; the highest version unless one is given. 404 when unknown."""
        versions = self.models.get(name)
        if not versions:
            raise NotFoundError(f"unknown model {name!r}; see GET /v1/models")
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            known = ", ".join(str(v) for v in sorted(versions))
            raise NotFoundError(f"model {name!r} has no version {version}; versions: {known}")
        return versions[version]
