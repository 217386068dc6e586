from http import HTTPStatus

import numpy as np

# Two graphs (encoder then decoder) vs one (autoencoder) on the same float32 weights.
ROUNDTRIP_TOLERANCE = 1e-4

SERIES = [
    list(np.sin(np.linspace(0, 6, 140)).round(5)),
    [0.5, 1.5, -0.2, 0.3, 2.0, 1.0, 0.0, -1.0, 0.4],
    [3.0, 2.0],
]


def test_encode_gives_one_embedding_per_series(client):
    body = client.post("/v1/models/tiny-seq/versions/1/encode", json={"sequences": SERIES}).json()
    assert body["model"] == "tiny-seq" and body["version"] == 1
    assert np.asarray(body["embeddings"]).shape == (3, 6)


def test_reconstruct_keeps_lengths_and_reports_errors(client):
    body = client.post("/v1/models/tiny-seq/reconstruct", json={"sequences": SERIES}).json()
    assert body["version"] == 2  # the highest version is the default
    assert [len(r) for r in body["reconstructions"]] == [140, 9, 2]
    assert len(body["errors"]) == 3 and all(e >= 0 for e in body["errors"])


def test_multivariate_lists_of_feature_vectors_are_refused_for_univariate_models(client):
    response = client.post("/v1/models/tiny-seq/encode", json={"sequences": [[[1, 2], [3, 4]]]})
    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert "expects 1" in response.json()["error"]["message"]
    ok = client.post("/v1/models/tiny-seq/encode", json={"sequences": [[[1], [2], [3]]]})
    assert ok.status_code == HTTPStatus.OK


def test_decode_of_encode_equals_reconstruct(client):
    series = np.asarray(SERIES[0])
    embedded = client.post("/v1/models/tiny-seq/encode", json={"sequences": [SERIES[0]]}).json()
    decoded = client.post(
        "/v1/models/tiny-seq/decode", json={"embeddings": embedded["embeddings"], "lengths": [140]}
    ).json()
    reconstructed = client.post("/v1/models/tiny-seq/reconstruct", json={"sequences": [SERIES[0]]}).json()
    # decode answers in normalised units (per-series statistics are not part of an embedding).
    normalised = (np.asarray(reconstructed["reconstructions"][0]) - series.mean()) / series.std()
    assert np.abs(np.asarray(decoded["reconstructions"][0]) - normalised).max() <= ROUNDTRIP_TOLERANCE


def test_padding_in_a_batch_does_not_change_an_embedding(client):
    alone = client.post("/v1/models/tiny-seq/encode", json={"sequences": [SERIES[2]]}).json()["embeddings"][0]
    batched = client.post("/v1/models/tiny-seq/encode", json={"sequences": SERIES}).json()["embeddings"][2]
    assert np.abs(np.asarray(alone) - np.asarray(batched)).max() <= 1e-5
