"""Golden codec streams (tests/fixtures/streams/): committed bytes decode to their recorded pixels.

`clipped` streams were written by the release before escape coding and must go on decoding exactly as
then; `escaped` ones were written by this release with scripts/make_golden_streams.py, and encoding the
same photo with the same model version must give the same bytes again. Decoding is checked bit-exact on
the 8-bit pixels an answer holds, with one ONNX Runtime thread (a fixed float summation order).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from scripts.make_golden_streams import FOLDER, SETTINGS, photo, pixels_sha256
from service.codecs.bitstream import read_stream
from service.codecs.rate_control import RateRequest
from service.kinds.codec import codec_decode, codec_encode
from service.model import LoadedModel
from service.repository import load_version
from tests.conftest import ROOT

RECORDS: list[dict[str, Any]] = json.loads((FOLDER / "streams.json").read_text())


@cache
def _model(name: str, version: int) -> LoadedModel:
    return load_version(ROOT / "models" / name / str(version), SETTINGS)


@pytest.mark.parametrize("record", RECORDS, ids=[r["file"] for r in RECORDS])
def test_a_golden_stream_decodes_to_its_recorded_pixels(record: dict[str, Any]) -> None:
    stream = (FOLDER / record["file"]).read_bytes()
    assert read_stream(stream).header.escaped == (record["coding"] == "escaped")
    pixels = codec_decode(_model(record["model"], record["version"]), stream, SETTINGS)
    assert pixels.shape[0] == (1 if record["gray"] else 3)
    assert pixels_sha256(pixels) == record["pixels_sha256"]


@pytest.mark.parametrize("record", [r for r in RECORDS if r["coding"] == "escaped"], ids=lambda r: r["file"])
def test_encoding_the_photo_again_gives_the_golden_bytes(record: dict[str, Any]) -> None:
    model = _model(record["model"], record["version"])
    rate = RateRequest(quality=record.get("quality"))
    assert codec_encode(model, photo(record["gray"]), SETTINGS, rate).stream == (FOLDER / record["file"]).read_bytes()


def test_every_codec_the_repository_serves_has_a_golden_stream_of_its_highest_version() -> None:
    covered = {(r["model"], r["version"]) for r in RECORDS if r["coding"] == "escaped"}
    folders = [*Path(ROOT / "models").glob("image-codec-q*/*"), *Path(ROOT / "models").glob("image-codec/*")]
    defaults = {(p.parent.name, int(p.name)) for p in folders if p.is_dir()}
    highest = {(name, max(v for n, v in defaults if n == name)) for name, _ in defaults}
    assert highest <= covered
