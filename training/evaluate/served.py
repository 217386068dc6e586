"""Load an exported model the way the service does, so evaluations measure what is served."""

from __future__ import annotations

from pathlib import Path

from service.config import Settings
from service.repository import LoadedModel, load_version


def load_served(folder: Path) -> LoadedModel:
    """A model version folder (`models/NAME/VERSION`), or a model folder (its highest version)."""
    if not (folder / "model.json").is_file():
        versions = sorted((p for p in folder.glob("*") if p.name.isdigit()), key=lambda p: int(p.name))
        if not versions:
            raise FileNotFoundError(f"no model versions under {folder}")
        folder = versions[-1]
    return load_version(folder, Settings(repository=folder.parent.parent, providers=["CPUExecutionProvider"]))
