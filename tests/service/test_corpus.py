"""The hostile-input corpus against a real `ae-serve` process serving the committed default models."""

import io
from collections.abc import Iterator
from http import HTTPStatus

import httpx
import pytest
from PIL import Image

from bench.corpus import Case, Targets, build_cases, count_by_group, image_bytes, noise
from tests.conftest import BSDS, ROOT
from tests.service.server import running_server

MODELS = ROOT / "models"
# The classes issue 14 names, each with at least this many cases (bench/corpus.py).
HOSTILE_CLASSES = {"decoders": 20, "numbers": 15, "shapes": 30, "answers": 5, "overhead": 15}


def _served(name: str) -> str | None:
    return name if (MODELS / name).is_dir() else None


TARGETS = Targets(
    image=_served("image-conv"),
    sequence=_served("ecg-embed"),
    codec=_served("image-codec-q2"),
    reconstruct_only=_served("image-denoise"),
)


@pytest.fixture(scope="module")
def default_client() -> Iterator[httpx.Client]:
    # Ready (running_server waits for it): every committed version the repository's policy names loaded.
    with running_server(MODELS) as (_, base), httpx.Client(base_url=base, timeout=120) as client:
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
    counts = count_by_group(corpus)
    print("corpus:", len(corpus), "cases;", ", ".join(f"{group}: {count}" for group, count in counts.items()))
    assert len(corpus) >= 120
    assert len({case.name for case in corpus}) == len(corpus)
    for group, least in HOSTILE_CLASSES.items():
        assert counts.get(group, 0) >= least, (group, counts)


def _send(client: httpx.Client, case: Case) -> httpx.Response:
    headers = {name.encode(): value.encode("latin-1") for name, value in case.headers.items()}  # as HTTP has them
    if case.content_type:
        headers[b"content-type"] = case.content_type.encode()
    return client.request(case.method, case.path, content=case.body, headers=headers)


def test_every_case_gets_its_status_and_code_and_service_survives(default_client, corpus):
    failures, server_errors = [], []
    for case in corpus:
        response = _send(default_client, case)
        code = response.json()["error"]["code"] if response.status_code >= 400 else None
        if response.status_code >= HTTPStatus.INTERNAL_SERVER_ERROR:
            server_errors.append(case.name)
        if (response.status_code, code) != (case.status, case.code):
            failures.append(
                f"{case.group}/{case.name}: got {response.status_code} {code}, want {case.status} {case.code}"
            )
    assert not server_errors, server_errors
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
