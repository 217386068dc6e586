"""Rewrite every `models/NAME/VERSION/model.json` in the current manifest schema, in place.

    python scripts/migrate_manifests.py [--models models] [--datasets ../shared/datasets] [--check]

The service reads old schemas anyway (`service.manifest_upgrade`); this makes the committed files
say what they mean. Schema 1 -> 2 turns the training data record into structured fields and adds
the content hash it never had, computed from the data set itself, found by its recorded name in
the `AE_DATASETS` layout (`images/<name>/`, `sequences/<name>/<file>`); the recorded counts must
match that data's split, or the folder is left alone and reported.

Only `model.json` changes: graphs and tables, whose sha256 the manifest holds, are never touched.
Idempotent: a manifest already current and hashed is left byte for byte as it is, so the script
can run again whenever older model folders turn up. `--check` writes nothing and exits 1 if any
manifest would change.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import pydantic_core

from service.manifest import MANIFEST_FILE, DataRecord, FileSplit, Manifest, SeededSplit, sha256_of
from service.manifest_upgrade import upgrade
from training.data import image_files, image_folder_sha256, read_sequences, select_classes, split_files, split_indices

DEFAULT_DATASETS = Path(os.environ.get("AE_DATASETS", "../shared/datasets"))


def _hashed(record: DataRecord, datasets: Path) -> str:
    """The content hash of the recorded data, after checking its split gives the recorded counts."""
    if isinstance(record.split, FileSplit):
        folder = datasets / "images" / record.dataset
        train, val = split_files(image_files(folder), record.split.val_every)
        counts, digest = (len(train), len(val)), image_folder_sha256(folder)
    else:
        assert isinstance(record.split, SeededSplit)
        path = datasets / "sequences" / record.dataset / record.split.file
        data = select_classes(read_sequences(path), record.split.classes)
        train_idx, val_idx = split_indices(len(data.series), record.split.val_fraction, record.split.seed)
        counts, digest = (len(train_idx), len(val_idx)), sha256_of(path)
    if counts != (record.counts.train, record.counts.val):
        raise ValueError(f"{record.dataset}: the data splits {counts}, the manifest recorded {record.counts}")
    return digest


def migrated(raw: dict[str, Any], datasets: Path, hashes: dict[str, str]) -> dict[str, Any]:
    """`raw` in the current schema with its data hash filled in (`hashes` caches them per data set)."""
    current = upgrade(raw)
    Manifest.model_validate(current)  # the result must load as it will be served
    data = current["training"]["data"]
    if data.get("sha256") is None:
        record = DataRecord.model_validate(data)
        key = record.split.model_dump_json() + record.dataset
        if key not in hashes:
            hashes[key] = _hashed(record, datasets)
        current = {**current, "training": {**current["training"], "data": {**data, "sha256": hashes[key]}}}
    return current


def migrate_folder(folder: Path, datasets: Path, hashes: dict[str, str], write: bool) -> bool:
    """True if the folder's manifest changed (or would); a folder gone meanwhile is skipped."""
    path = folder / MANIFEST_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return False
    # pydantic's JSON writer, as export uses: every untouched value keeps its exact text.
    new = pydantic_core.to_json(migrated(json.loads(text), datasets, hashes), indent=2).decode() + "\n"
    if new == text:
        return False
    if write:
        path.write_text(new)
    return True


def main(argv: list[str] | None = None) -> int:
    """Migrate (or with `--check`, inspect) every version folder under `--models`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--datasets", type=Path, default=DEFAULT_DATASETS)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if anything would change")
    args = parser.parse_args(argv)
    hashes: dict[str, str] = {}
    changed, failed = [], []
    for folder in sorted(p.parent for p in args.models.glob(f"*/*/{MANIFEST_FILE}")):
        try:
            if migrate_folder(folder, args.datasets, hashes, write=not args.check):
                changed.append(folder)
        except (OSError, ValueError) as error:
            failed.append(folder)
            print(f"{folder}: not migrated: {error}", file=sys.stderr)
    verb = "would change" if args.check else "migrated"
    print(f"{verb} {len(changed)} manifest(s)" + "".join(f"\n  {f}" for f in changed))
    return 1 if failed or (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
