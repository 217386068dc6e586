"""bench/fuzz_images.py keeps working: its seeds, its determinism, its verdict, and a short run."""

from __future__ import annotations

import contextlib
import io
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from bench.fuzz_images import (
    CONTENT_TYPES,
    Case,
    Tally,
    Target,
    make_case,
    make_seeds,
    mutate,
    parse_targets,
    passed,
    save_failures,
)
from service.codecs.containers import check_container
from service.codecs.image import decode_image
from service.errors import DecodingError, PayloadTooLargeError
from service.limits import SizeLimits
from tests.conftest import ROOT

TINY_TARGETS = "tiny-image:reconstruct,tiny-image:encode,tiny-denoise:reconstruct,tiny-codec:encode"


def test_seeds_cover_every_accepted_format_in_several_modes():
    seeds = make_seeds()
    modes: dict[str, set[str]] = {}
    for seed in seeds:
        with Image.open(io.BytesIO(seed.data)) as image:
            image.load()
            assert image.format == seed.fmt, seed.name
            modes.setdefault(seed.fmt, set()).add(image.mode)
    assert set(modes) == set(CONTENT_TYPES)
    assert {"RGB", "L", "RGBA", "P", "I;16"} <= modes["PNG"] | modes["TIFF"]
    # GIF holds palettes only (a gray image comes back as P); its seeds differ by transparency and frames.
    assert all(len(found) >= 2 for fmt, found in modes.items() if fmt != "GIF"), modes


def test_a_case_depends_only_on_the_run_seed_and_its_index():
    seeds, targets = make_seeds(), parse_targets(TINY_TARGETS)
    assert make_case(41, 7, seeds, targets) == make_case(41, 7, seeds, targets)
    cases = [make_case(index, 7, seeds, targets) for index in range(300)]
    assert cases != [make_case(index, 8, seeds, targets) for index in range(300)]
    originals = {seed.data for seed in seeds}
    # Nearly every body differs from its seed (a bit flipped back or a byte set to itself is rare).
    assert sum(case.body not in originals for case in cases) > 290
    assert len({case.target for case in cases}) == 4 and len({case.seed for case in cases}) > 30


def test_mutations_are_stacked_and_reported():
    body, done = mutate(bytes(range(200)), random.Random(3))
    assert 1 <= len(done) <= 4 and body != bytes(range(200))


def _case(index: int) -> Case:
    return Case(index, "png-rgb", ("flip 3:1",), b"\x89PNG", Target("m", "reconstruct"), "image/png")


def test_the_run_fails_on_a_5xx_a_missing_answer_a_dead_server_or_a_short_count():
    clean = Tally.empty()
    for index in range(3):
        clean.record(_case(index), "400")
    assert passed(clean, 3, server_alive=True)
    assert not passed(clean, 3, server_alive=False)
    assert not passed(clean, 4, server_alive=True)
    for bad in ("500", "503", "no answer: ConnectionResetError"):
        tally = Tally.empty()
        tally.record(_case(0), "200")
        tally.record(_case(1), bad)
        assert not passed(tally, 2, server_alive=True) and tally.failures == [_case(1)]


def test_failing_inputs_are_saved_with_what_reproduces_them(tmp_path: Path):
    save_failures(tmp_path, [_case(12)])
    assert (tmp_path / "12.bin").read_bytes() == b"\x89PNG"
    about = json.loads((tmp_path / "12.json").read_text())
    assert about["path"] == "/v1/models/m/reconstruct" and about["content_type"] == "image/png"
    assert "--data-binary @12.bin" in about["curl"]


def test_a_short_run_against_the_tiny_models_answers_no_5xx(tiny_models: Path, tmp_path: Path):
    summary_path = tmp_path / "summary.json"
    command = [
        sys.executable,
        "-m",
        "bench.fuzz_images",
        "--count",
        "200",
        "--workers",
        "2",
        "--repository",
        str(tiny_models),
        "--targets",
        TINY_TARGETS,
        "--failures",
        str(tmp_path / "failures"),
        "--summary",
        str(summary_path),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    summary = json.loads(summary_path.read_text())
    statuses = Counter({int(status): n for status, n in summary["statuses"].items()})
    assert summary["sent"] == 200 and sum(statuses.values()) == 200
    assert max(statuses) < 500 and summary["server_alive_at_end"]
    # Both kinds of answer: mutations that still decode reach the models, the others are refused.
    assert statuses[200] > 0 and statuses[400] > 0
    assert not (tmp_path / "failures").exists()


# ---------------------------------------------------------------- what the fuzz run found


@pytest.mark.parametrize("body", [b"II*\x00", b"II*\x00\x08", b"MM\x00*\x00\x00\x00"])
def test_a_tiff_cut_before_its_directory_offset_is_400(body):
    # Found by the first 100k run: the container walk unpacked the offset past the end (struct.error, 500).
    with pytest.raises(DecodingError):
        decode_image(body, 3, SizeLimits(16_777_216, 16_384), 8)


def test_the_container_walk_takes_every_prefix_of_every_seed():
    # Truncation is the commonest damage: the walk must answer for any cut, not only the ones fuzzed.
    for seed in make_seeds():
        for end in range(len(seed.data) + 1):
            with contextlib.suppress(PayloadTooLargeError):
                check_container(seed.data[:end])
