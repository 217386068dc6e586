"""`ae-train evaluate embeddings`: 1-NN accuracy of embeddings vs raw series, and anomaly ROC AUC.

Both use the held-out split each model was trained with (its manifest records the data config), so
no evaluated series was seen in training:
1. embeddings: 1-NN (Euclidean) of held-out embeddings against training-split embeddings, next to
   1-NN on the raw z-normalised series, with the dimensions of each;
2. anomalies: ROC AUC of the per-series reconstruction error, held-out normal beats (the model's own
   validation split of its training classes) against every series of the other classes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from service.codecs.sequence import normalize
from service.config import Settings
from service.kinds.sequence import sequence_encode, sequence_reconstruct
from service.manifest import SequenceNormalization
from service.model import LoadedModel
from training.data import read_sequences, split_indices
from training.evaluate.served import evaluation_folder, load_served, scored_versions
from training.plots import plot_error_distributions

_SETTINGS = Settings(max_batch_sequences=1_000_000)


def _split(model: LoadedModel, count: int) -> tuple[np.ndarray, np.ndarray]:
    data = model.manifest.training.config["data"]
    assert isinstance(data, dict)
    return split_indices(count, float(data["val_fraction"]), int(data["split_seed"]))


def one_nn_accuracy(train: np.ndarray, train_y: np.ndarray, test: np.ndarray, test_y: np.ndarray) -> float:
    """Fraction of test rows whose Euclidean nearest training row has the same label."""
    distances = (test**2).sum(1)[:, None] - 2 * test @ train.T + (train**2).sum(1)[None, :]
    return float((train_y[distances.argmin(1)] == test_y).mean())


def roc_auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counting half (the Mann-Whitney U statistic)."""
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))


def _encode(model: LoadedModel, series: list[np.ndarray]) -> np.ndarray:
    return np.asarray(sequence_encode(model, [s[:, 0].tolist() for s in series], _SETTINGS))


def evaluate_embeddings(model: LoadedModel, series: list[np.ndarray], labels: np.ndarray) -> dict[str, Any]:
    """1-NN accuracy on embeddings and on the raw z-normalised series."""
    train_idx, test_idx = _split(model, len(series))
    per_series = SequenceNormalization(kind="per_series")
    raw = np.stack([normalize(s, per_series)[0][:, 0] for s in series])  # equal lengths (UCR)
    embedded = _encode(model, series)
    return {
        "model": f"{model.manifest.name}/{model.manifest.version}",
        "train_series": len(train_idx),
        "test_series": len(test_idx),
        "embedding_dims": int(embedded.shape[1]),
        "raw_dims": int(raw.shape[1]),
        "embedding_1nn_accuracy": one_nn_accuracy(
            embedded[train_idx], labels[train_idx], embedded[test_idx], labels[test_idx]
        ),
        "raw_euclidean_1nn_accuracy": one_nn_accuracy(
            raw[train_idx], labels[train_idx], raw[test_idx], labels[test_idx]
        ),
    }


def _anomaly_sets(model: LoadedModel, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(held-out normal indices, abnormal indices), none of them seen in training."""
    data = model.manifest.training.config["data"]
    assert isinstance(data, dict)
    classes = data.get("classes")
    if classes:  # trained on these classes only: its split ran over that subset; other classes are unseen
        subset = np.flatnonzero(np.isin(labels, classes))
        _, val = _split(model, len(subset))
        return subset[val], np.flatnonzero(~np.isin(labels, classes))
    _, val = _split(model, len(labels))  # trained on every class: only its validation split is unseen
    return val[labels[val] == 1], val[labels[val] != 1]


def evaluate_anomalies(model: LoadedModel, series: list[np.ndarray], labels: np.ndarray, out: Path) -> dict[str, Any]:
    """ROC AUC of reconstruction errors, held-out normals vs the other classes; writes a histogram PNG."""
    held_out_normals, abnormal = _anomaly_sets(model, labels)
    _, errors = sequence_reconstruct(model, [s[:, 0].tolist() for s in series], _SETTINGS)
    error_array = np.asarray(errors)
    plot_error_distributions(error_array[held_out_normals], error_array[abnormal], out)
    return {
        "model": f"{model.manifest.name}/{model.manifest.version}",
        "held_out_normal_series": len(held_out_normals),
        "abnormal_series": len(abnormal),
        "roc_auc": roc_auc(error_array[held_out_normals], error_array[abnormal]),
        "median_error_normal": float(np.median(error_array[held_out_normals])),
        "median_error_abnormal": float(np.median(error_array[abnormal])),
    }


def run(data: Path, model_dir: Path, anomaly_dir: Path | None, out: Path | None = None) -> dict[str, Any]:
    """Both evaluations; writes `embeddings.json`, `embeddings.csv` and `anomaly_errors.png` under `out`.

    `out` defaults to `docs/evaluation/<embedding model>/v<N>/`; the report's `models` names the
    anomaly model's version too.
    """
    dataset = read_sequences(data)
    if dataset.labels is None:
        raise ValueError(f"{data} has no labels; the evaluation needs a labelled file (UCR or JSON Lines)")
    labels = np.asarray(dataset.labels)
    embedder = load_served(model_dir)
    anomaly = load_served(anomaly_dir) if anomaly_dir is not None else None
    out = out or evaluation_folder(embedder.manifest.name, embedder.manifest.version)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "models": scored_versions(embedder, *([anomaly] if anomaly else [])),
        "data": str(data),
        "embeddings": evaluate_embeddings(embedder, dataset.series, labels),
    }
    if anomaly is not None:
        report["anomaly"] = evaluate_anomalies(anomaly, dataset.series, labels, out / "anomaly_errors.png")
    (out / "embeddings.json").write_text(json.dumps(report, indent=2) + "\n")
    rows = ["metric,value"] + [
        f"{section}.{k},{v}" for section in ("embeddings", "anomaly") for k, v in report.get(section, {}).items()
    ]
    (out / "embeddings.csv").write_text("\n".join(rows) + "\n")
    return report
