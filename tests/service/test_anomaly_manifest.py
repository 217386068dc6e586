"""The manifest's optional `anomaly` calibration: round trips, schema 2 without it, what it refuses."""

import json

import pydantic
import pytest

from service.manifest import SCHEMA_VERSION, AnomalyCalibration, Manifest, load_manifest
from tests.conftest import ROOT

CALIBRATION = {
    "threshold": 0.3,
    "quantile": 0.9,
    "calibration_scores": [0.1, 0.2, 0.2, 0.4],
    "calibration_data": {
        "dataset": "ecg5000",
        "file": "ECG5000_TRAIN.txt",
        "classes": [1],
        "split": "held-out normals, first half of a seeded permutation",
        "seed": 0,
        "series": 4,
        "sha256": "0" * 64,
    },
}


def _raw(tiny_models, model: str = "tiny-seq/2") -> dict:
    return json.loads((tiny_models / model / "model.json").read_text())


def test_a_manifest_with_a_calibration_round_trips(tiny_models):
    manifest = Manifest.model_validate({**_raw(tiny_models), "anomaly": CALIBRATION})
    again = Manifest.model_validate_json(manifest.model_dump_json(indent=2))
    assert again == manifest
    assert again.anomaly is not None and again.anomaly.threshold == 0.3
    assert again.anomaly.calibration_data.series == 4


def test_a_manifest_without_one_round_trips_and_has_none(tiny_models):
    manifest = Manifest.model_validate(_raw(tiny_models))
    assert manifest.anomaly is None
    assert Manifest.model_validate_json(manifest.model_dump_json()) == manifest


def test_a_schema_2_manifest_reads_as_the_current_schema(tiny_models, tmp_path):
    old = {**_raw(tiny_models), "schema_version": 2}
    (tmp_path / "model.json").write_text(json.dumps(old))
    manifest = load_manifest(tmp_path)
    assert manifest.schema_version == SCHEMA_VERSION == 6 and manifest.anomaly is None


def test_the_committed_anomaly_model_carries_its_calibration():
    manifest = load_manifest(ROOT / "models/ecg-anomaly/1")
    assert manifest.anomaly is not None and manifest.anomaly.quantile == 0.99
    scores = manifest.anomaly.calibration_scores
    assert scores == sorted(scores) and len(scores) == manifest.anomaly.calibration_data.series
    assert scores[0] <= manifest.anomaly.threshold <= scores[-1]


@pytest.mark.parametrize(
    "change",
    [
        {"calibration_scores": [0.4, 0.1]},
        {"calibration_scores": []},
        {"threshold": -1.0},
        {"threshold": float("nan")},
        {"quantile": 1.0},
        {"surprise": 1},
    ],
    ids=["unsorted", "empty", "negative", "nan", "quantile-1", "unknown-field"],
)
def test_a_broken_calibration_is_refused(tiny_models, change):
    with pytest.raises(pydantic.ValidationError):
        Manifest.model_validate({**_raw(tiny_models), "anomaly": {**CALIBRATION, **change}})


def test_only_a_reconstruct_model_of_sequences_carries_one(tiny_models):
    with pytest.raises(pydantic.ValidationError, match="only a reconstruct model of sequences"):
        Manifest.model_validate({**_raw(tiny_models, "tiny-seq/1"), "anomaly": CALIBRATION})


@pytest.mark.parametrize(("score", "percent"), [(0.05, 0.0), (0.1, 25.0), (0.2, 75.0), (0.3, 75.0), (9.0, 100.0)])
def test_percentile_is_the_share_of_calibration_scores_at_or_below(score, percent):
    assert AnomalyCalibration.model_validate(CALIBRATION).percentile(score) == percent
