"""Anomaly answers and drift metrics of `reconstruct` on sequence models.

Against a real server (two workers, so the drift counters must sum across them) on a copy of tiny-seq
whose v2 carries a calibration; the uncalibrated tiny-seq answers through the in-process app.
"""

import itertools
import json
import re
import shutil
import urllib.error
import urllib.request
from http import HTTPStatus

import pytest

from bench.net import http_get
from service.config import Settings
from service.kinds.sequence import sequence_reconstruct
from service.manifest import load_manifest
from tests.service.server import running_server
from training.evaluate.served import load_served

# Six series of different shapes, so their errors differ.
SERIES = [[float((i * k) % 7) - 3 for i in range(12 + 4 * k)] for k in range(6)]
ROUTE = "/v1/models/tiny-seq/reconstruct"


def _post(base: str, body: object) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        base + ROUTE, data=data, headers={"content-type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _metric(text: str, name: str) -> float:
    pattern = rf'^{name}\{{model="tiny-seq",version="2"\}} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.M))


@pytest.fixture(scope="module")
def calibrated(tiny_models, tmp_path_factory):
    """(repository, errors of SERIES, threshold): tiny-seq v2 calibrated around the errors of SERIES.

    One calibration score sits just below each error (half the smallest, then midpoints), so the k-th
    smallest error is at percentile 100 k / 6 even if the server's floats differ in the last bits; the
    threshold is the midpoint between the third and fourth smallest error, so three series are flagged.
    """
    repository = tmp_path_factory.mktemp("calibrated")
    shutil.copytree(tiny_models / "tiny-seq", repository / "tiny-seq")
    folder = repository / "tiny-seq/2"
    _, errors = sequence_reconstruct(load_served(folder), SERIES, Settings())
    ordered = sorted(errors)
    assert len(set(ordered)) == len(ordered), "the test needs distinct errors"
    below_each = [ordered[0] / 2] + [(a + b) / 2 for a, b in itertools.pairwise(ordered)]
    threshold = below_each[3]
    raw = json.loads((folder / "model.json").read_text())
    raw["anomaly"] = {
        "threshold": threshold,
        "quantile": 0.5,
        "calibration_scores": below_each,
        "calibration_data": {
            "dataset": "ecg5000-200",
            "file": "ecg5000-200.txt",
            "classes": [1],
            "split": "the test's own series",
            "seed": 0,
            "series": len(ordered),
            "sha256": "0" * 64,
        },
    }
    (folder / "model.json").write_text(json.dumps(raw))
    assert load_manifest(folder).anomaly is not None
    return repository, errors, threshold


def test_calibrated_answers_metrics_and_caller_thresholds(calibrated, tmp_path):
    repository, errors, threshold = calibrated
    ranks = {e: 100.0 * (i + 1) / len(errors) for i, e in enumerate(sorted(errors))}
    with running_server(repository, AE_WORKERS="2", PROMETHEUS_MULTIPROC_DIR=str(tmp_path)) as (_, base):
        # The listing says which threshold flags anomalies (what the /ui page draws the score against).
        status, text = http_get(f"{base}/v1/models/tiny-seq")
        version = next(v for v in json.loads(text)["versions"] if v["version"] == 2)
        assert version["anomaly"] == {"threshold": pytest.approx(threshold), "quantile": 0.5}
        status, body = _post(base, {"sequences": SERIES})
        assert status == HTTPStatus.OK and body["version"] == 2
        assert body["errors"] == pytest.approx(errors, rel=1e-5)
        assert body["percentiles"] == pytest.approx([ranks[e] for e in errors])
        assert body["anomaly"] == [e > threshold for e in errors] and sum(body["anomaly"]) == 3

        # The caller's threshold decides the flags; percentiles still place scores among the calibration.
        status, low = _post(base, {"sequences": SERIES, "threshold": 0})
        assert status == HTTPStatus.OK and low["anomaly"] == [True] * 6
        assert low["percentiles"] == body["percentiles"]
        status, high = _post(base, {"sequences": SERIES, "threshold": 1e9})
        assert status == HTTPStatus.OK and high["anomaly"] == [False] * 6

        for bad in (b'{"sequences": [[1, 2, 3]], "threshold": NaN}', {"sequences": [[1, 2]], "threshold": -0.5}):
            status, error = _post(base, bad)
            assert status == HTTPStatus.UNPROCESSABLE_ENTITY and "threshold" in error["error"]["message"]
        for bad_value in ("0.5", True, None, [0.5]):
            status, _ = _post(base, {"sequences": [[1, 2]], "threshold": bad_value})
            assert status == HTTPStatus.UNPROCESSABLE_ENTITY

        # Three answered requests of six series; flagged counts the stored threshold (three per
        # request), whatever threshold the caller sent. Any worker's scrape reports both workers'.
        for _ in range(3):
            status, text = http_get(f"{base}/metrics")
            assert status == HTTPStatus.OK
            assert _metric(text, "ae_series_scored_total") == 18
            assert _metric(text, "ae_series_above_threshold_total") == 9
            assert _metric(text, "ae_reconstruction_error_count") == 18
            assert _metric(text, "ae_reconstruction_error_sum") == pytest.approx(3 * sum(errors), rel=1e-4)


def test_an_uncalibrated_model_flags_only_with_the_callers_threshold(client):
    plain = client.post(ROUTE, json={"sequences": SERIES}).json()
    assert set(plain) == {"reconstructions", "errors", "model", "version"}
    cut = sorted(plain["errors"])[2]
    flagged = client.post(ROUTE, json={"sequences": SERIES, "threshold": cut}).json()
    assert "percentiles" not in flagged
    assert flagged["anomaly"] == [e > cut for e in plain["errors"]] and sum(flagged["anomaly"]) == 3
    response = client.post(ROUTE, json={"sequences": SERIES, "threshold": "high"})
    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
