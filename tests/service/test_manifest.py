import importlib.util
import json
import shutil

import pydantic
import pytest

from service.manifest import SCHEMA_VERSION, FileSplit, Manifest, SeededSplit, load_manifest, sha256_of
from tests.conftest import ECG, ROOT

OLD_IMAGES = "../shared/datasets/images/bsds400"
OLD_SERIES = "../shared/datasets/sequences/ecg5000/ECG5000_TRAIN.txt"


def _schema_1(manifest: dict, old_record: dict, path: str) -> dict:
    """`manifest` as schema 1 wrote it: the data record a JSON string with the machine's path."""
    config = manifest["training"]["config"]
    old_config = {**config, "data": {**config["data"], "path": path}}
    training = {**manifest["training"], "data": json.dumps(old_record, sort_keys=True), "config": old_config}
    return {**manifest, "schema_version": 1, "training": training}


def _schema_1_series(tiny_models) -> dict:
    current = json.loads((tiny_models / "tiny-seq/1/model.json").read_text())
    counts = current["training"]["data"]["counts"]  # the committed sample's split
    old = {"features": 1, "path": OLD_SERIES, "train_series": counts["train"], "val_series": counts["val"]}
    return _schema_1(current, old, OLD_SERIES)


def _load_script():
    spec = importlib.util.spec_from_file_location("migrate_manifests", ROOT / "scripts/migrate_manifests.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_current_schema_round_trips(tiny_models):
    manifest = load_manifest(tiny_models / "tiny-image/1")
    assert manifest.schema_version == SCHEMA_VERSION == 6
    again = Manifest.model_validate_json(manifest.model_dump_json(indent=2))
    assert again == manifest and again.training.data.sha256 == manifest.training.data.sha256


@pytest.mark.parametrize(
    ("model", "old", "path", "dataset", "split", "unit"),
    [
        pytest.param(
            "tiny-image/1",
            {"path": ".gpu-data/bsds400", "train_images": 27, "val_images": 3},
            ".gpu-data/bsds400",
            "bsds400",
            FileSplit(val_every=10),
            "images",
            id="images",
        ),
        pytest.param(
            "tiny-seq/1",
            {"path": OLD_SERIES, "train_series": 160, "val_series": 40, "features": 1},
            OLD_SERIES,
            "ecg5000",
            SeededSplit(file="ECG5000_TRAIN.txt", classes=None, val_fraction=0.2, seed=0),
            "series",
            id="series",
        ),
    ],
)
def test_schema_1_is_upgraded_on_read(tiny_models, tmp_path, model, old, path, dataset, split, unit):
    current = json.loads((tiny_models / model / "model.json").read_text())
    (tmp_path / "model.json").write_text(json.dumps(_schema_1(current, old, path)))
    manifest = load_manifest(tmp_path)
    data = manifest.training.data
    assert manifest.schema_version == SCHEMA_VERSION
    assert (data.dataset, data.split, data.counts.unit, data.sha256) == (dataset, split, unit, None)
    assert (data.counts.train, data.counts.val) == (old.get("train_images", 160), old.get("val_images", 40))
    assert "path" not in manifest.training.config["data"]
    assert manifest.graphs == load_manifest(tiny_models / model).graphs


def test_a_broken_schema_1_record_is_a_validation_error(tiny_models, tmp_path):
    broken = {**_schema_1_series(tiny_models)}
    broken["training"] = {**broken["training"], "data": "{not json"}
    with pytest.raises(pydantic.ValidationError):
        Manifest.model_validate(broken)


def test_migration_script_hashes_the_data_and_is_idempotent(tiny_models, tmp_path):
    models, datasets = tmp_path / "models", tmp_path / "datasets"
    shutil.copytree(tiny_models / "tiny-seq/1", models / "tiny-seq/1")
    (models / "tiny-seq/1/model.json").write_text(json.dumps(_schema_1_series(tiny_models)))
    (datasets / "sequences/ecg5000").mkdir(parents=True)
    shutil.copy(ECG, datasets / "sequences/ecg5000/ECG5000_TRAIN.txt")
    graphs = {p.name: sha256_of(p) for p in (models / "tiny-seq/1").glob("*.onnx")}
    migrate = _load_script()

    assert migrate.main(["--models", str(models), "--datasets", str(datasets)]) == 0
    written = (models / "tiny-seq/1/model.json").read_text()
    manifest = load_manifest(models / "tiny-seq/1")
    assert json.loads(written)["schema_version"] == SCHEMA_VERSION and manifest.training.data.sha256 == sha256_of(ECG)
    assert {p.name: sha256_of(p) for p in (models / "tiny-seq/1").glob("*.onnx")} == graphs
    assert migrate.main(["--models", str(models), "--datasets", str(datasets), "--check"]) == 0
    assert migrate.main(["--models", str(models), "--datasets", str(datasets)]) == 0
    assert (models / "tiny-seq/1/model.json").read_text() == written


def test_migration_refuses_data_that_does_not_split_as_recorded(tiny_models, tmp_path):
    models, datasets = tmp_path / "models", tmp_path / "datasets"
    (models / "tiny-seq/1").mkdir(parents=True)
    old = json.dumps(_schema_1_series(tiny_models))
    (models / "tiny-seq/1/model.json").write_text(old)
    (datasets / "sequences/ecg5000").mkdir(parents=True)
    lines = ECG.read_text().splitlines()[:100]  # half the series: a different split
    (datasets / "sequences/ecg5000/ECG5000_TRAIN.txt").write_text("\n".join(lines) + "\n")
    assert _load_script().main(["--models", str(models), "--datasets", str(datasets)]) == 1
    assert (models / "tiny-seq/1/model.json").read_text() == old


def test_a_gray_variant_must_mirror_the_graphs_and_bring_its_record(tiny_models):
    raw = json.loads((tiny_models / "tiny-codec" / "1" / "model.json").read_text())
    graph = raw["graphs"]["encoder"]
    record = raw["training"]
    tables = raw["entropy_model"]
    complete = {
        **raw,
        "graphs": {**raw["graphs"], "gray_encoder": graph, "gray_decoder": graph},
        "gray_entropy_model": tables,
        "gray_training": record,
    }
    assert Manifest.model_validate(complete).has_gray_variant
    broken = [
        ({**complete, "graphs": {**raw["graphs"], "gray_encoder": graph}}, "one gray_ graph per graph"),
        ({**complete, "gray_entropy_model": None}, "needs gray_entropy_model"),
        ({**complete, "gray_training": None}, "gray_training record"),
        ({**complete, "input": {**raw["input"], "channels": 1}}, "only an RGB image model"),
    ]
    for manifest, message in broken:
        with pytest.raises(ValueError, match=message):
            Manifest.model_validate(manifest)
