"""`ae` against a real server: every command, a folder of good and bad files, refusals made before sending."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client.cli import choices, main
from client.cli.choices import CodecChoice
from client.errors import UnsupportedOptionError
from client.results import ModelInfo, VersionInfo
from client.sync import Client
from tests.client.conftest import png, series


@pytest.fixture()
def ae(server_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AE_URL", server_url)
    return lambda *argv: main(list(argv))


@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    """A folder of two good images (one in a subfolder), a broken PNG and a text file."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(png(40, 48, seed=1))
    (folder / "sub" / "b.png").write_bytes(png(32, 32, seed=2))
    (folder / "broken.png").write_bytes(png(32, 32)[:60])
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_models_lists_each_model(ae, capsys: pytest.CaptureFixture[str]) -> None:
    assert ae("models") == 0
    out = capsys.readouterr().out
    assert "tiny-seq" in out and "1,2" in out and "compress" in out
    assert ae("models", "--json") == 0
    assert {m["name"] for m in json.loads(capsys.readouterr().out)} >= {"tiny-image", "tiny-codec"}


def test_a_folder_of_good_and_bad_files(ae, mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert ae("compress", str(mixed), "-m", "tiny-codec", "-o", str(out), "-j", "3") == 1
    err = capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a.aeic", "b.aeic"]
    assert f"failed: {mixed / 'broken.png'}: 400 undecodable_body: " in err
    assert f"failed: {mixed / 'notes.txt'}: 400 undecodable_body: the body is not a decodable image" in err
    assert "compress: 4 files, 2 ok, 2 failed;" in err and "mean bpp" in err

    decoded = tmp_path / "decoded"
    assert ae("decompress", str(out / "*.aeic"), "-o", str(decoded), "--quiet") == 0
    assert Image.open(decoded / "a.png").size == (48, 40)
    assert "decompress: 2 files, 2 ok, 0 failed" in capsys.readouterr().err


def test_reconstruct_and_denoise_write_pngs(ae, mixed: Path, tmp_path: Path, capsys) -> None:
    good = [str(mixed / "a.png"), str(mixed / "sub" / "b.png")]
    assert ae("reconstruct", *good, "-m", "tiny-codec", "-o", str(tmp_path / "r")) == 0
    assert "mean PSNR" in capsys.readouterr().err
    assert ae("denoise", *good, "-m", "tiny-denoise", "-o", str(tmp_path / "d")) == 0
    assert Image.open(tmp_path / "d" / "b.png").size == (32, 32)
    assert ae("reconstruct", good[0], "-m", "tiny-image", "-o", str(tmp_path / "i")) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(
            ["compress", "-m", "tiny-hyperprior", "--quality", "3"], "quality in [0, 1], not 3", id="quality-range"
        ),
        pytest.param(["compress", "-m", "tiny-nope", "--quality", "3"], "'tiny-nope' is not served", id="no-ladder"),
        pytest.param(["compress", "-m", "tiny-image"], "tiny-image is a reconstruct model", id="not-a-codec"),
        pytest.param(["denoise", "-m", "tiny-image"], "needs a denoise model", id="not-a-denoiser"),
        pytest.param(["embed", "-m", "tiny-image"], "takes image input", id="image-model-for-series"),
        pytest.param(["reconstruct", "-m", "nope"], "model 'nope' is not served", id="unknown-model"),
    ],
)
def test_unsupported_flags_are_refused_before_sending(ae, mixed: Path, tmp_path: Path, capsys, argv, message) -> None:
    out = tmp_path / "never"
    assert ae(argv[0], str(mixed / "a.png"), *argv[1:], "-o", str(out)) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_compress_asks_a_variable_rate_codec_for_a_quality_or_a_size(ae, mixed: Path, tmp_path: Path, capsys) -> None:
    image = mixed / "a.png"
    assert ae("compress", str(image), "-m", "tiny-hyperprior", "--quality", "0.3", "-o", str(tmp_path / "q")) == 0
    assert "quality 0.300" in capsys.readouterr().err
    budget = 100_000  # more than the best quality needs: the stream of quality 1
    assert (
        ae("compress", str(image), "-m", "tiny-hyperprior", "--max-bytes", str(budget), "-o", str(tmp_path / "b")) == 0
    )
    assert "quality 1.000" in capsys.readouterr().err and (tmp_path / "b" / "a.aeic").stat().st_size <= budget


@pytest.mark.parametrize("rate", [["--quality", "0.5"], ["--target-bpp", "0.5"], ["--max-bytes", "400"]])
def test_a_fixed_rate_codec_answers_rate_options_with_422(ae, mixed: Path, tmp_path: Path, capsys, rate) -> None:
    assert ae("compress", str(mixed / "a.png"), "-m", "tiny-codec", *rate, "-o", str(tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert f"failed: {mixed / 'a.png'}: 422 invalid_input: " in err and "fixed rate" in err


def _codec(name: str, task: str = "compress") -> ModelInfo:
    info = VersionInfo(1, task, "codec", "image", ("encode", "decode", "reconstruct"), raw={})
    return ModelInfo(name, 1, (info,))


LADDER = [_codec(f"image-codec-q{q}") for q in range(1, 6)] + [_codec("image-conv", "reconstruct")]
VARIABLE_RATE = [*LADDER, _codec("image-codec")]


@pytest.mark.parametrize(
    ("models", "argv", "chosen"),
    [
        pytest.param(LADDER, ("image-codec", 3, None), CodecChoice("image-codec-q3"), id="rung-by-quality"),
        pytest.param(LADDER, ("image-codec-q2", None, None), CodecChoice("image-codec-q2"), id="rung-by-name"),
        # A served name gets the rate as asked: the server says whether it has rate control (422 if not).
        pytest.param(LADDER, ("image-codec-q2", 0.4, None), CodecChoice("image-codec-q2", 0.4), id="served-rung"),
        pytest.param(VARIABLE_RATE, ("image-codec", 0.6, None), CodecChoice("image-codec", 0.6), id="quality"),
        pytest.param(
            VARIABLE_RATE, ("image-codec", None, 0.3), CodecChoice("image-codec", target_bpp=0.3), id="target-bpp"
        ),
        pytest.param(VARIABLE_RATE, ("image-codec", None, None), CodecChoice("image-codec"), id="default-quality"),
    ],
)
def test_quality_is_a_served_codecs_own_or_picks_a_rung(models, argv, chosen) -> None:
    assert choices.codec_for(models, *argv) == chosen


@pytest.mark.parametrize(
    ("models", "argv", "message"),
    [
        pytest.param(LADDER, ("image-codec", None, None), "add --quality Q, Q in [1, 2, 3, 4, 5]", id="no-quality"),
        pytest.param(LADDER, ("image-codec", 9, None), "qualities of image-codec: 1, 2, 3, 4, 5", id="no-rung"),
        pytest.param(LADDER, ("image-codec", 0.6, None), "no model image-codec-q0.6 is served", id="fraction"),
        pytest.param(
            LADDER,
            ("image-codec", None, 0.3),
            "--target-bpp needs a variable-rate codec (rate control), and image-codec names a ladder of fixed-rate "
            "codecs (image-codec-q1, image-codec-q2, image-codec-q3, image-codec-q4, image-codec-q5)",
            id="target-bpp-on-a-ladder",
        ),
        pytest.param(
            LADDER, ("image-codec", None, None, 2000), "--max-bytes needs a variable-rate codec", id="max-bytes"
        ),
        pytest.param(
            VARIABLE_RATE,
            ("image-codec", 3, None),
            "quality in [0, 1], not 3 (for the fixed-rate rung, use -m image-codec-q3)",
            id="rung-number-to-a-variable-rate-codec",
        ),
    ],
)
def test_rate_options_a_codec_cannot_take_are_refused(models, argv, message) -> None:
    with pytest.raises(UnsupportedOptionError, match=re.escape(message)):
        choices.codec_for(models, *argv)


def test_target_bpp_on_a_ladder_is_refused_by_the_cli(mixed: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(Client, "models", lambda self: LADDER)  # a served ladder, and nothing else is asked
    out = tmp_path / "never"
    argv = ["compress", str(mixed / "a.png"), "-m", "image-codec", "--target-bpp", "0.3", "-o", str(out)]
    assert main(["--url", "http://127.0.0.1:9", *argv]) == 2
    err = capsys.readouterr().err
    assert "ae compress: --target-bpp needs a variable-rate codec" in err and "image-codec-q5" in err
    assert not out.exists()


def test_embed_reads_csv_npy_and_jsonl(ae, tmp_path: Path, capsys) -> None:
    rows = series(9, length=50)
    (tmp_path / "s.csv").write_text(
        "\n".join(["t" + ",t".join(map(str, range(50)))] + [",".join(map(str, r)) for r in rows])
    )
    np.save(tmp_path / "s.npy", np.asarray(rows))
    (tmp_path / "s.jsonl").write_text("\n".join(json.dumps({"sequence": r}) for r in rows))
    for name in ("s.csv", "s.npy", "s.jsonl"):
        target = tmp_path / f"{name}.out.npy"
        argv = ["embed", str(tmp_path / name), "-m", "tiny-seq", "--model-version", "1", "-o", str(target), "-q"]
        assert ae(*argv, "--batch-size", "4") == 0
        assert np.load(target).shape[0] == 9
    assert "9 series" in capsys.readouterr().err
    np.testing.assert_allclose(np.load(tmp_path / "s.csv.out.npy"), np.load(tmp_path / "s.jsonl.out.npy"), atol=1e-5)


def test_anomaly_scores_each_series_and_flags_with_a_threshold(ae, tmp_path: Path, capsys) -> None:
    np.save(tmp_path / "s.npy", np.asarray(series(5)))
    (tmp_path / "bad.csv").write_text("1,2,x\n")
    assert ae("anomaly", str(tmp_path / "s.npy"), "-m", "tiny-seq", "--threshold", "0.05") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 5 and {row["anomaly"] for row in rows} <= {"true", "false"}
    assert all((float(row["error"]) > 0.05) == (row["anomaly"] == "true") for row in rows)

    report = tmp_path / "scores.csv"
    assert ae("anomaly", str(tmp_path / "s.npy"), str(tmp_path / "bad.csv"), "-m", "tiny-seq", "-o", str(report)) == 1
    rows = list(csv.DictReader(report.open()))
    assert len(rows) == 5 and rows[0]["anomaly"] == "" and rows[0]["percentile"] == ""  # no calibration, no flags
    assert f"failed: {tmp_path / 'bad.csv'}: " in capsys.readouterr().err
