"""Load an exported model the way the service does, so evaluations measure what is served.

Reports are named by what they scored: `docs/evaluation/<model>/v<N>/` by default, and every
report's JSON carries `"models": {name: version}` for each model it scored.
"""

from __future__ import annotations

from pathlib import Path

from service.config import Settings
from service.model import LoadedModel
from service.repository import latest_version_folder, load_version

EVALUATIONS = Path("docs/evaluation")


def model_folder(name_or_path: str, models_dir: Path) -> Path:
    """What `--model` names: an existing path as given, else the model of that name under `models_dir`.

    A name may carry a version (`image-conv/2`). The path wins when both exist, since it is what the
    user typed literally.
    """
    given = Path(name_or_path)
    if given.exists():
        return given
    under = models_dir / name_or_path
    if under.exists():
        return under
    known = sorted(p.name for p in models_dir.iterdir() if p.is_dir()) if models_dir.is_dir() else []
    listing = f"; models there: {', '.join(known)}" if known else f"; {models_dir} holds no models"
    raise FileNotFoundError(f"no model {name_or_path!r}: not a path, nor a model under {models_dir}{listing}")


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
