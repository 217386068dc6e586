"""Reading older `model.json` schemas: each is translated, as a plain dict, into the current one.

Model folders are immutable once published (their graphs' sha256 are in the manifest), so the
service keeps loading every schema it ever wrote; `Manifest` runs `upgrade` before validating.

Schema 1 -> 2: `training.data` was a JSON string inside the JSON, holding the path the training
machine read (`../shared/datasets/images/bsds400`, `.gpu-data/bsds400`) and the split's counts.
It becomes a structured record (`service.manifest.DataRecord`): the data set's name taken from
that path, the split rule from the recorded config, the counts, and no content hash (schema 1
never recorded one). `data.path` is dropped from the recorded config as well.

Schema 2 -> 3: nothing to translate; schema 3 adds the optional `anomaly` calibration of anomaly
models, which a schema-2 file does not have.

Schema 3 -> 4: nothing to translate; schema 4 adds the optional gray variant of image models.

Schema 4 -> 5: nothing to translate; schema 5 adds the optional fp16 variant of graphs.

Schema 5 -> 6: nothing to translate; schema 6 adds the mean-scale hyperprior entropy model (`kind`,
`transforms` in `entropy_model`) of variable-rate codecs.
"""

from __future__ import annotations

import json
from pathlib import PurePosixPath
from typing import Any


def dataset_name(path: str, is_file: bool) -> str:
    """The name a data set is recorded under, in lower case.

    An image folder's name, or a series file's stem up to its first underscore (UCR names its files
    `NAME_TRAIN.txt`, `NAME_TEST.txt`).
    """
    part = PurePosixPath(path.replace("\\", "/"))
    return (part.stem.split("_")[0] if is_file else part.name).lower()


def _data_record_v1(old: dict[str, Any], data_config: dict[str, Any]) -> dict[str, Any]:
    path = str(old.get("path") or data_config.get("path") or "")
    if "train_images" in old:
        return {
            "dataset": dataset_name(path, is_file=False),
            "split": {"kind": "every_nth_file", "val_every": int(data_config.get("val_every", 10))},
            "counts": {"unit": "images", "train": old["train_images"], "val": old["val_images"]},
            "sha256": None,
        }
    return {
        "dataset": dataset_name(path, is_file=True),
        "split": {
            "kind": "seeded_permutation",
            "file": PurePosixPath(path.replace("\\", "/")).name,
            "classes": data_config.get("classes"),
            "val_fraction": float(data_config.get("val_fraction", 0.2)),
            "seed": int(data_config.get("split_seed", 0)),
        },
        "counts": {"unit": "series", "train": old["train_series"], "val": old["val_series"]},
        "sha256": None,
    }


def upgrade_v1(raw: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 manifest as a schema-2 one (a new dict; `raw` is not changed)."""
    training = dict(raw["training"])
    config = dict(training.get("config", {}))
    data_config = dict(config.get("data", {}))
    old = training["data"]
    old = json.loads(old) if isinstance(old, str) else old
    training["data"] = _data_record_v1(old, data_config)
    data_config.pop("path", None)
    training["config"] = {**config, "data": data_config}
    return {**raw, "schema_version": 2, "training": training}


def upgrade_v2(raw: dict[str, Any]) -> dict[str, Any]:
    """A schema-2 manifest as a schema-3 one: schema 3 only adds the optional `anomaly` field."""
    return {**raw, "schema_version": 3}


def upgrade_v3(raw: dict[str, Any]) -> dict[str, Any]:
    """A schema-3 manifest as a schema-4 one: schema 4 only adds the optional gray variant."""
    return {**raw, "schema_version": 4}


def upgrade_v4(raw: dict[str, Any]) -> dict[str, Any]:
    """A schema-4 manifest as a schema-5 one: schema 5 only adds the optional fp16 variant."""
    return {**raw, "schema_version": 5}


def upgrade_v5(raw: dict[str, Any]) -> dict[str, Any]:
    """A schema-5 manifest as a schema-6 one: schema 6 only adds the hyperprior entropy model."""
    return {**raw, "schema_version": 6}


def upgrade(raw: dict[str, Any]) -> dict[str, Any]:
    """`raw` in the current schema: older schemas translated, anything else returned as it is.

    A schema-1 file too broken to translate is returned unchanged, so that validation rejects it
    with an ordinary `ValidationError` (the repository reports those per model folder).
    """
    if raw.get("schema_version") == 1 and isinstance(raw.get("training"), dict):
        try:
            raw = upgrade_v1(raw)
        except (ValueError, KeyError, TypeError, AttributeError):
            return raw
    if raw.get("schema_version") == 2:
        raw = upgrade_v2(raw)
    if raw.get("schema_version") == 3:
        raw = upgrade_v3(raw)
    if raw.get("schema_version") == 4:
        raw = upgrade_v4(raw)
    if raw.get("schema_version") == 5:
        raw = upgrade_v5(raw)
    return raw
