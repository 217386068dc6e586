"""Load an exported model the way the service does, so evaluations measure what is served.

Reports are named by what they scored: `docs/evaluation/<model>/v<N>/` by default, and every
report's JSON carries `"models": {name: version}` for each model it scored.
"""

from __future__ import annotations

from pathlib import Path

from service.config import Settings
from service.repository import LoadedModel, latest_version_folder, load_version

EVALUATIONS = Path("docs/evaluation")


def load_served(folder: Path) -> LoadedModel:
    """A model version folder (`models/NAME/VERSION`), or a model folder (its highest version)."""
    if not (folder / "model.json").is_file():
        folder = latest_version_folder(folder)
    return load_version(folder, Settings(repository=folder.parent.parent, providers=["CPUExecutionProvider"]))


def scored_versions(*models: LoadedModel) -> dict[str, int | list[int]]:
    """`{name: version}` of the models a report scored, in the order given.

    A name scored at several versions (an embedding and an anomaly model may be two versions of one
    model) maps to their sorted list.
    """
    versions: dict[str, list[int]] = {}
    for model in models:
        versions.setdefault(model.manifest.name, []).append(model.manifest.version)
    return {name: found[0] if len(found) == 1 else sorted(set(found)) for name, found in versions.items()}


def evaluation_folder(name: str, version: int) -> Path:
    """The default output folder of an evaluation of `name` version `version`."""
    return EVALUATIONS / name / f"v{version}"
