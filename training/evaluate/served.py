"""Load an exported model the way the service does, so evaluations measure what is served."""

from __future__ import annotations

from pathlib import Path

from service.config import Settings
from service.repository import LoadedModel, latest_version_folder, load_version


def load_served(folder: Path) -> LoadedModel:
    """A model version folder (`models/NAME/VERSION`), or a model folder (its highest version)."""
    if not (folder / "model.json").is_file():
        folder = latest_version_folder(folder)
    return load_version(folder, Settings(repository=folder.parent.parent, providers=["CPUExecutionProvider"]))
