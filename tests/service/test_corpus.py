"""The hostile-input corpus against the app serving the committed default models."""

import io
from http import HTTPStatus
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from bench.corpus import Targets, build_cases, image_bytes, noise
from service.main import create_app
from tests.conftest import BSDS, ROOT
from tests.service.conftest import service_settings

MODELS = ROOT / "models"


def _served(name: str) -> str | None:
    return name if (MODELS / name).is_dir() else None


TARGETS = Targets(
    image=_served("image-conv"),
    sequence=_served("ecg-embed"),
    codec=_served("image-codec-q2"),
    reconstruct_only=_served("image-denoise"),
)


@pytest.fixture(scope="module")
def default_client():
    with TestClient(create_app(service_settings(Path(MODELS), version_policy=None))) as client:
        # Ready: every committed version the policy names loaded.
        assert client.get("/health/ready").status_code == HTTPStatus.OK
        yield client


@pytest.fixture(scope="module")
def corpus(default_client):
    def encode_stream(png: bytes) -> bytes:
        response = default_client.post(
            f"/v1/models/{TARGETS.codec}/encode", content=png, headers={"content-type": "image/png"}
        )
        assert response.status_code == HTTPStatus.OK
        return response.content

    return build_cases(TARGETS, encode_stream)


def test_the_corpus_is_big_enough(corpus):
    assert len(corpus) >= 40
    assert len({case.name for case in corpus}) == len(corpus)


def test_every_case_gets_its_status_and_code_and_service_survives(default_client, corpus):
    failures = []
    for case in corpus:
        headers = {**case.headers, **({"content-type": case.content_type} if case.content_type else {})}
        response = default_client.request(case.method, case.path, content=case.body, headers=headers)
        code = response.json()["error"]["code"] if response.status_code >= 400 else None
        if (response.status_code, code) != (case.status, case.code):
            failures.append(f"{case.name}: got {response.status_code} {code}, want {case.status} {case.code}")
    assert not failures, "\n".join(failures)
    after = default_client.post(
        f"/v1/models/{TARGETS.image}/reconstruct",
        content=image_bytes(noise(33, 47)),
        headers={"content-type": "image/png"},
    )
    assert after.status_code == HTTPStatus.OK and after.headers["content-type"] == "image/png"


def _photo_png(height: int, width: int) -> bytes:
    photo = Image.open(sorted(BSDS.glob("*.jpg"))[0]).convert("RGB").crop((0, 0, width, height))
    buffer = io.BytesIO()
    photo.save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_default_codec_level_round_trips_a_photo(default_client):
    # A real photo crop of odd size through encode -> decode for each committed level: bits and
    # PSNR rise with the level, the stream decodes to the size it came from, the same every time.
    png = _photo_png(75, 101)
    levels = sorted(p.name for p in MODELS.glob("image-codec-q*"))
    assert len(levels) >= 4
    points = []
    for name in levels:
        encoded = default_client.post(f"/v1/models/{name}/encode", content=png, headers={"content-type": "image/png"})
        assert encoded.status_code == HTTPStatus.OK
        assert encoded.headers["content-type"] == "application/octet-stream"
        stream_headers = {"content-type": "application/octet-stream"}
        decoded = [
            default_client.post(f"/v1/models/{name}/decode", content=encoded.content, headers=stream_headers)
            for _ in range(2)
        ]
        assert all(d.status_code == HTTPStatus.OK for d in decoded)
        assert decoded[0].content == decoded[1].content  # deterministic
        both = default_client.post(f"/v1/models/{name}/reconstruct", content=png, headers={"content-type": "image/png"})
        assert both.status_code == HTTPStatus.OK
        points.append((float(encoded.headers["x-bits-per-pixel"]), float(both.headers["x-psnr"])))
    rates, qualities = zip(*points, strict=True)
    assert list(rates) == sorted(rates) and list(qualities) == sorted(qualities), points
    assert qualities[0] > 20.0, points
