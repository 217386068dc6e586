"""Windows over long recordings: `window` and `stride` on sequence encode and reconstruct.

Placement and counting as units; the answers against a real server on tiny-seq, whose windows must
score exactly as each window sent alone.
"""

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from service.codecs.sequence import min_stride, parse_windowed_sequences, parse_windowing, window_count, window_starts
from service.errors import InvalidInputError
from service.manifest import SequenceInputSpec, SequenceNormalization
from tests.service.server import running_server

# A 5000-step recording: window 140, stride 70 puts 70 windows every 70 steps and one aligned to the end.
RECORDING = [float(np.sin(t / 9.0) + 0.3 * np.sin(t / 2.3) + 0.001 * (t % 97)) for t in range(5000)]
WINDOW, STRIDE = 140, 70
SPEC = SequenceInputSpec(features=1, normalization=SequenceNormalization(kind="per_series"))


@pytest.mark.parametrize(
    ("length", "window", "stride", "starts"),
    [
        (10, 10, 5, [0]),  # exactly one window
        (10, 4, 2, [0, 2, 4, 6]),  # the strides end on the last step: no extra window
        (11, 4, 2, [0, 2, 4, 6, 7]),  # a tail shorter than a stride: one last window aligned to the end
        (12, 4, 4, [0, 4, 8]),  # side by side
        (13, 4, 4, [0, 4, 8, 9]),
        (5000, WINDOW, STRIDE, [*range(0, 4831, 70), 4860]),
    ],
)
def test_window_starts_cover_every_step_with_whole_windows(length, window, stride, starts):
    assert window_starts(length, window, stride) == starts
    assert window_count(length, window, stride) == len(starts)
    covered: set[int] = set()
    for start in starts:
        assert start >= 0 and start + window <= length
        covered.update(range(start, start + window))
    assert covered == set(range(length))


def test_window_count_is_arithmetic_and_matches_the_placement_for_many_shapes():
    for length in range(1, 60):
        for window in range(1, length + 1):
            for stride in range(min_stride(window), window + 1):
                assert window_count(length, window, stride) == len(window_starts(length, window, stride))
    assert window_count(100_000, 140, 18) == 1 + -(-(100_000 - 140) // 18)


def test_stride_floor_is_an_eighth_of_the_window_rounded_up():
    assert [min_stride(w) for w in (1, 8, 9, 140, 4096)] == [1, 1, 2, 18, 512]


@pytest.mark.parametrize(
    ("window", "stride"),
    [
        (0, 1),
        (True, 1),
        (1.5, 1),
        ("140", 140),
        (4097, 4097),
        (140, 0),
        (140, 17),
        (140, 141),
        (140, 70.0),
        (140, None),
    ],
)
def test_bad_window_or_stride_is_refused(window, stride):
    with pytest.raises(InvalidInputError):
        parse_windowing(window, stride, 1, 4096)


def test_good_windows_pass():
    assert parse_windowing(140, 140, 1, 4096) == (140, 140)
    assert parse_windowing(140, 18, 1, 4096) == (140, 18)
    assert parse_windowing(4096, 512, 4096, 4096) == (4096, 512)


def test_too_many_windows_are_refused_before_any_series_is_converted():
    spec = SPEC
    # Not numbers: converting would be refused for that; the count is refused first, from the lengths.
    with pytest.raises(InvalidInputError, match="271 windows"):
        parse_windowed_sequences([["x"] * 5000], spec, 256, 100_000, 140, 18)
    windows = parse_windowed_sequences([RECORDING, RECORDING[:300]], spec, 256, 100_000, 140, 70)
    assert [(i, s) for i, s, _ in windows][-4:] == [(1, 0), (1, 70), (1, 140), (1, 160)]
    assert all(w.shape == (140, 1) for _, _, w in windows)
    np.testing.assert_array_equal(windows[-1][2][:, 0], RECORDING[160:300])


def test_a_series_shorter_than_the_window_or_longer_than_the_limit_is_refused():
    spec = SPEC
    with pytest.raises(InvalidInputError, match=r"sequences\[1\] has 100 steps"):
        parse_windowed_sequences([RECORDING, RECORDING[:100]], spec, 256, 100_000, 140, 70)
    with pytest.raises(InvalidInputError, match=r"sequences\[0\] has 5000 steps"):
        parse_windowed_sequences([RECORDING], spec, 256, 4999, 140, 70)


# ------------------------------------------------------------------ against a real server


def _post(base: str, task: str, body: object) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{base}/v1/models/tiny-seq/{task}",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server(tiny_models):
    with running_server(tiny_models) as (_, base):
        yield base


def _expected_starts() -> list[int]:
    return window_starts(len(RECORDING), WINDOW, STRIDE)


def test_reconstruct_with_windows_scores_each_window_as_if_sent_alone(server):
    status, answer = _post(server, "reconstruct", {"sequences": [RECORDING], "window": WINDOW, "stride": STRIDE})
    assert status == 200, answer
    starts = _expected_starts()
    assert answer["windows"] == [{"series": 0, "start": s} for s in starts]
    assert len(answer["errors"]) == len(starts) == 71
    assert "reconstructions" not in answer  # not unless asked
    pieces = [RECORDING[s : s + WINDOW] for s in starts]
    status, alone = _post(server, "reconstruct", {"sequences": pieces})
    assert status == 200
    assert answer["errors"] == pytest.approx(alone["errors"], rel=1e-5)
    for k in (0, len(starts) - 1):  # the first window, and the last one aligned to the end
        status, single = _post(server, "reconstruct", {"sequences": [pieces[k]]})
        assert single["errors"][0] == pytest.approx(answer["errors"][k], rel=1e-5)
    assert len(set(answer["errors"])) > 1


def test_reconstruct_with_windows_answers_reconstructions_when_asked(server):
    body = {"sequences": [RECORDING[:400]], "window": WINDOW, "include_reconstructions": True}
    status, answer = _post(server, "reconstruct", body)
    assert status == 200, answer
    assert answer["windows"] == [{"series": 0, "start": s} for s in (0, 140, 260)]
    assert [len(r) for r in answer["reconstructions"]] == [WINDOW] * 3
    status, alone = _post(server, "reconstruct", {"sequences": [RECORDING[260:400]]})
    assert answer["reconstructions"][2] == pytest.approx(alone["reconstructions"][0], rel=1e-4, abs=1e-5)


def test_reconstruct_with_windows_flags_windows_with_the_callers_threshold(server):
    body = {"sequences": [RECORDING], "window": WINDOW, "stride": STRIDE}
    _, plain = _post(server, "reconstruct", body)
    middle = float(np.median(plain["errors"]))
    status, answer = _post(server, "reconstruct", {**body, "threshold": middle})
    assert status == 200
    assert answer["anomaly"] == [e > middle for e in answer["errors"]]


def test_encode_with_windows_gives_one_embedding_per_window(server):
    second = RECORDING[1000:1300]
    status, answer = _post(server, "encode", {"sequences": [RECORDING, second], "window": WINDOW, "stride": STRIDE})
    assert status == 200, answer
    expected = [(0, s) for s in _expected_starts()] + [(1, s) for s in (0, 70, 140, 160)]
    assert [(w["series"], w["start"]) for w in answer["windows"]] == expected
    pieces = [([RECORDING, second][i])[s : s + WINDOW] for i, s in expected]
    status, alone = _post(server, "encode", {"sequences": pieces})
    assert status == 200
    np.testing.assert_allclose(answer["embeddings"], alone["embeddings"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "extra",
    [
        {"window": 0},
        {"window": True},
        {"window": "140"},
        {"window": 5001},
        {"window": 100_000},
        {"window": WINDOW, "stride": 0},
        {"window": WINDOW, "stride": 17},  # below window / 8
        {"window": WINDOW, "stride": WINDOW + 1},  # would leave steps unscored
        {"window": WINDOW, "stride": None},
        {"stride": STRIDE},  # a stride needs a window
        {"window": WINDOW, "stride": 18},  # 271 windows > AE_MAX_BATCH_SEQUENCES (256)
    ],
)
@pytest.mark.parametrize("task", ["encode", "reconstruct"])
def test_bad_windows_are_422(server, task, extra):
    status, answer = _post(server, task, {"sequences": [RECORDING], **extra})
    assert status == 422, answer
    assert answer["error"]["code"] == "invalid_input"


@pytest.mark.parametrize(
    "extra", [{"window": WINDOW, "include_reconstructions": "yes"}, {"include_reconstructions": True}]
)
def test_bad_reconstructions_flag_is_422(server, extra):
    status, answer = _post(server, "reconstruct", {"sequences": [RECORDING[:100]], **extra})
    assert status == 422, answer
    assert "include_reconstructions" in answer["error"]["message"]


def test_a_long_recording_without_a_window_is_still_refused_and_ordinary_requests_are_unchanged(server):
    status, _ = _post(server, "reconstruct", {"sequences": [RECORDING]})
    assert status == 422  # 5000 steps exceed the model's max_length: only windows fit it
    series = [RECORDING[:100], RECORDING[50:170]]
    status, answer = _post(server, "reconstruct", {"sequences": series})
    assert status == 200
    assert set(answer) == {"reconstructions", "errors", "model", "version"}
    assert [len(r) for r in answer["reconstructions"]] == [100, 120]
    status, answer = _post(server, "encode", {"sequences": series})
    assert status == 200 and set(answer) == {"embeddings", "model", "version"}
