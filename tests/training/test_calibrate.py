"""`ae-train calibrate` on the tiny reconstruct model and the committed heartbeat sample (hermetic)."""

import json
import shutil

import numpy as np
import pytest

from service.kinds.sequence import sequence_reconstruct
from service.manifest import load_manifest, sha256_of
from tests.conftest import ECG
from training.calibrate import calibration_split, precision_recall, stored_scores
from training.cli import main
from training.data import read_sequences
from training.evaluate.embeddings import _SETTINGS, _anomaly_sets
from training.evaluate.served import load_served


@pytest.fixture
def tiny_repository(tiny_models, tmp_path):
    """A copy of tiny-seq (v1 embed, v2 reconstruct), so writing model.json leaves the session's alone."""
    shutil.copytree(tiny_models / "tiny-seq", tmp_path / "models/tiny-seq")
    return tmp_path / "models"


def test_calibrate_writes_the_threshold_and_reports_the_evaluation(tiny_repository, tmp_path, capsys):
    folder = tiny_repository / "tiny-seq/2"
    graphs = {p.name: sha256_of(p) for p in folder.glob("*.onnx")}
    out = tmp_path / "report"
    argv = ["calibrate", "--models-dir", str(tiny_repository), "--model", "tiny-seq", "--data", str(ECG)]
    assert main([*argv, "--quantile", "0.9", "--seed", "3", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)

    model = load_served(folder)  # still loads: graphs untouched, their sha256 still match
    assert {p.name: sha256_of(p) for p in folder.glob("*.onnx")} == graphs
    anomaly = model.manifest.anomaly
    assert anomaly is not None and anomaly.quantile == 0.9 and anomaly.calibration_data.seed == 3
    assert anomaly.calibration_data.sha256 == sha256_of(ECG)

    # The threshold is the quantile of the served errors of the calibration half, recomputed here.
    data = read_sequences(ECG)
    labels = np.asarray(data.labels)
    held_out_normals, abnormal = _anomaly_sets(model, labels)
    calibration, evaluation = calibration_split(held_out_normals, 3)
    assert set(calibration).isdisjoint(evaluation) and set(calibration) | set(evaluation) == set(held_out_normals)
    _, errors = sequence_reconstruct(model, [s[:, 0].tolist() for s in data.series], _SETTINGS)
    scores = np.asarray(errors)[calibration]
    assert anomaly.threshold == pytest.approx(float(np.quantile(scores, 0.9)), rel=1e-6)
    assert anomaly.calibration_scores == pytest.approx(sorted(scores.tolist()), rel=1e-6)
    assert anomaly.calibration_data.series == len(calibration)

    report = json.loads((out / "calibration.json").read_text())
    assert report["models"] == {"tiny-seq": 2} and printed["roc_auc"] == report["roc_auc"]
    assert (report["evaluation_normal_series"], report["abnormal_series"]) == (len(evaluation), len(abnormal))
    flagged = np.asarray(errors)[abnormal] > anomaly.threshold
    assert report["recall"] == pytest.approx(flagged.mean())
    assert 0.0 <= report["roc_auc"] <= 1.0


def test_calibrate_refuses_a_model_that_does_not_reconstruct(tiny_repository, capsys):
    argv = ["calibrate", "--models-dir", str(tiny_repository), "--model", "tiny-seq/1", "--data", str(ECG)]
    assert main(argv) == 2
    assert "calibration needs 'reconstruct'" in capsys.readouterr().err
    assert load_manifest(tiny_repository / "tiny-seq/1").anomaly is None


def test_precision_and_recall_count_scores_above_the_threshold():
    result = precision_recall(np.array([0.1, 0.5]), np.array([0.4, 0.6, 0.2]), threshold=0.3)
    assert (result["true_positives"], result["false_positives"]) == (2, 1)
    assert result["precision"] == pytest.approx(2 / 3) and result["recall"] == pytest.approx(2 / 3)


def test_many_scores_are_kept_as_evenly_spaced_quantiles():
    scores = np.random.default_rng(0).exponential(size=5000)
    kept = stored_scores(scores)
    assert len(kept) == 1001 and kept == sorted(kept)
    assert (kept[0], kept[-1], kept[500]) == (scores.min(), scores.max(), pytest.approx(np.median(scores)))
    assert stored_scores(np.array([0.3, 0.1])) == [0.1, 0.3]
