"""What the repository folder holds now, cheaply: version folders and a fingerprint of each.

A fingerprint is every file's relative path, size and modification time (no hashing): enough to see a
version folder that was added, removed or rewritten, at the cost of one `stat` per file. The sha256
check still happens when a changed version loads (`repository.load_version`). The policy file's own
fingerprint takes part in every model's: a changed policy may choose other versions.

Everything here touches the disk: call it in a worker thread, never on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.config import Settings
from service.policy import POLICY_FILE
from service.repository import version_folders

# (relative path, size, mtime in ns) per file, sorted by path.
Fingerprint = tuple[tuple[str, int, int], ...]


def folder_fingerprint(folder: Path) -> Fingerprint:
    """The files under `folder` as (path, size, mtime); empty when it is gone."""
    entries = []
    for path in sorted(folder.rglob("*")):
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed while we looked: the next look sees the rest
            continue
        if path.is_file():
            entries.append((str(path.relative_to(folder)), stat.st_size, stat.st_mtime_ns))
    return tuple(entries)


def policy_fingerprint(settings: Settings) -> Fingerprint:
    """The version policy file's size and mtime; empty without one."""
    path = settings.version_policy or settings.repository / POLICY_FILE
    try:
        stat = path.stat()
    except FileNotFoundError:
        return ()
    return ((str(path), stat.st_size, stat.st_mtime_ns),)


@dataclass(frozen=True)
class ModelOnDisk:
    """One model folder: its version folders and their fingerprints."""

    name: str
    folders: dict[int, Path]
    fingerprints: dict[int, Fingerprint]

    def fingerprint(self) -> tuple[tuple[int, Fingerprint], ...]:
        """The whole model's fingerprint: changes when any version is added, removed or rewritten."""
        return tuple(sorted(self.fingerprints.items()))


def scan_model(root: Path, name: str) -> ModelOnDisk | None:
    """`root/name` as it is now; None when it is not a model folder (no integer version folders)."""
    folder = root / name
    if not folder.is_dir() or name.startswith("."):
        return None
    folders = {int(p.name): p for p in version_folders(folder)}
    if not folders:
        return None
    return ModelOnDisk(name, folders, {v: folder_fingerprint(p) for v, p in folders.items()})


def scan_repository(root: Path) -> dict[str, ModelOnDisk]:
    """Every model folder under `root`, by name."""
    if not root.is_dir():
        return {}
    found = (scan_model(root, folder.name) for folder in sorted(root.iterdir()) if folder.is_dir())
    return {model.name: model for model in found if model is not None}
