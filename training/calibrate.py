"""`ae-train calibrate`: store an anomaly threshold in a reconstruct model's `model.json`, and score it.

The held-out normal series are those training never saw (as in `ae-train evaluate embeddings`: the
model's own validation split of its training classes). A seeded permutation cuts them in two
disjoint halves: the calibration half sets the threshold (the chosen quantile of its reconstruction
errors), the evaluation half is scored against the abnormal series with that threshold, so the
reported precision and recall are not measured on the series that set it. Every score comes from
the served graph (`service.kinds.sequence.sequence_reconstruct`).

Only `model.json` changes: the graphs and their sha256 stay as exported (the manifest is not hashed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from service.kinds.sequence import sequence_reconstruct
from service.manifest import MANIFEST_FILE, AnomalyCalibration, CalibrationData, sha256_of
from service.model import LoadedModel
from service.repository import latest_version_folder
from training.data import read_sequences
from training.evaluate.embeddings import _SETTINGS, _anomaly_sets, roc_auc
from training.evaluate.served import evaluation_folder, load_served, scored_versions

# Above this many calibration scores the manifest keeps evenly spaced quantiles of them instead,
# so model.json stays small while percentiles stay within 0.1 of a point.
MAX_STORED_SCORES = 1001
NORMAL_CLASS = 1


def calibration_split(held_out_normals: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, evaluation): a seeded permutation of the held-out normals cut in two disjoint halves."""
    if len(held_out_normals) < 2:
        raise ValueError(f"{len(held_out_normals)} held-out normal series: calibration needs at least 2")
    order = np.random.default_rng(seed).permutation(held_out_normals)
    half = len(order) // 2
    return np.sort(order[:half]), np.sort(order[half:])


def stored_scores(scores: np.ndarray) -> list[float]:
    """The sorted calibration scores the manifest keeps: all of them, or MAX_STORED_SCORES quantiles."""
    ordered = np.sort(scores)
    if len(ordered) > MAX_STORED_SCORES:
        ordered = np.quantile(ordered, np.linspace(0.0, 1.0, MAX_STORED_SCORES))
    return [float(s) for s in ordered]


def precision_recall(normal: np.ndarray, abnormal: np.ndarray, threshold: float) -> dict[str, float | int]:
    """Precision and recall of `score > threshold` flagging abnormal series, with the counts behind them."""
    true_positives = int((abnormal > threshold).sum())
    false_positives = int((normal > threshold).sum())
    flagged = true_positives + false_positives
    return {
        "precision": true_positives / flagged if flagged else float("nan"),
        "recall": true_positives / len(abnormal),
        "false_positive_rate": false_positives / len(normal),
        "true_positives": true_positives,
        "false_positives": false_positives,
    }


def _errors(model: LoadedModel, series: list[np.ndarray]) -> np.ndarray:
    _, errors = sequence_reconstruct(model, [s[:, 0].tolist() for s in series], _SETTINGS)
    return np.asarray(errors)


def calibrate(model: LoadedModel, data: Path, quantile: float, seed: int) -> tuple[AnomalyCalibration, dict[str, Any]]:
    """The calibration for `model` from the labelled series in `data`, and its evaluation report."""
    if model.manifest.task != "reconstruct":
        raise ValueError(f"{model.manifest.name} has task {model.manifest.task!r}; calibration needs 'reconstruct'")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be between 0 and 1 (exclusive); got {quantile}")
    dataset = read_sequences(data)
    if dataset.labels is None:
        raise ValueError(f"{data} has no labels; calibration needs normal (class 1) and abnormal series")
    labels = np.asarray(dataset.labels)
    held_out_normals, abnormal = _anomaly_sets(model, labels)
    calibration_idx, evaluation_idx = calibration_split(held_out_normals, seed)
    if len(abnormal) == 0:
        raise ValueError(f"{data} holds no abnormal series the model did not train on")
    errors = _errors(model, dataset.series)
    scores = errors[calibration_idx]
    threshold = float(np.quantile(scores, quantile))
    trained_classes = model.manifest.training.config["data"]
    assert isinstance(trained_classes, dict)
    calibration = AnomalyCalibration(
        threshold=threshold,
        quantile=quantile,
        calibration_scores=stored_scores(scores),
        calibration_data=CalibrationData(
            dataset=model.manifest.training.data.dataset,
            file=data.name,
            classes=[NORMAL_CLASS] if not trained_classes.get("classes") else list(trained_classes["classes"]),
            split=(
                "the training run's held-out normal series (its validation split), cut in two by a seeded "
                "permutation: the first half calibrates, the second half is left for the evaluation"
            ),
            seed=seed,
            series=len(calibration_idx),
            sha256=sha256_of(data),
        ),
    )
    normal_scores, abnormal_scores = errors[evaluation_idx], errors[abnormal]
    report = {
        "models": scored_versions(model),
        "data": str(data),
        "threshold": threshold,
        "quantile": quantile,
        "seed": seed,
        "calibration_series": len(calibration_idx),
        "evaluation_normal_series": len(evaluation_idx),
        "abnormal_series": len(abnormal),
        "abnormal_classes": sorted({int(c) for c in labels[abnormal]}),
        "roc_auc": roc_auc(normal_scores, abnormal_scores),
        **precision_recall(normal_scores, abnormal_scores, threshold),
    }
    return calibration, report


def write_calibration(folder: Path, calibration: AnomalyCalibration) -> None:
    """Rewrite `folder/model.json` with `anomaly` set, in the newest schema; graphs are not touched."""
    path = folder / MANIFEST_FILE
    loaded = load_served(folder).manifest  # validates the graphs' sha256 and upgrades old schemas
    updated = loaded.model_copy(update={"anomaly": calibration})
    # As `ae-train export` writes it; fields the file left out (their defaults) stay out.
    text = updated.model_dump_json(indent=2, exclude_unset=True) + "\n"
    type(loaded).model_validate_json(text)  # what is written must load
    path.write_text(text)


def run(folder: Path, data: Path, quantile: float, seed: int, out: Path | None = None) -> dict[str, Any]:
    """Calibrate the version in `folder` (or its model's latest), write model.json and the report.

    The report goes to `out`, by default `docs/evaluation/<model>/v<N>/calibration.json`.
    """
    version_folder = folder if (folder / MANIFEST_FILE).is_file() else latest_version_folder(folder)
    model = load_served(version_folder)
    calibration, report = calibrate(model, data, quantile, seed)
    write_calibration(version_folder, calibration)
    out = out or evaluation_folder(model.manifest.name, model.manifest.version)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(report, indent=2) + "\n")
    return {"model_json": str(version_folder / MANIFEST_FILE), "report": str(out / "calibration.json"), **report}
