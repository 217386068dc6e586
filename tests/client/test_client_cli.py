"""`ae` against a real server: every command, a folder of good and bad files, refusals made before sending."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from client.cli import choices, main
from client.errors import UnsupportedOptionError
from client.results import ModelInfo, VersionInfo
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
        pytest.param(["compress", "-m", "tiny-codec", "--target-bpp", "0.5"], "no rate control", id="target-bpp"),
        pytest.param(["compress", "-m", "tiny-codec", "--quality", "3"], "no model tiny-codec-q3", id="no-ladder"),
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


def test_quality_picks_a_rung_of_the_codec_ladder() -> None:
    def model(name: str, task: str = "compress") -> ModelInfo:
        info = VersionInfo(1, task, "codec", "image", ("encode", "decode", "reconstruct"), raw={})
        return ModelInfo(name, 1, (info,))

    models = [model(f"image-codec-q{q}") for q in range(1, 6)] + [model("image-conv", "reconstruct")]
    assert choices.codec_for(models, "image-codec", 3, None) == "image-codec-q3"
    assert choices.codec_for(models, "image-codec-q2", None, None) == "image-codec-q2"
    for name, quality, message in [
        ("image-codec", None, "add --quality Q, Q in [1, 2, 3, 4, 5]"),
        ("image-codec", 9, "qualities of image-codec: 1, 2, 3, 4, 5"),
        ("image-codec-q2", 3, "itself one fixed quality"),
    ]:
        with pytest.raises(UnsupportedOptionError, match=message.replace("[", r"\[").replace("]", r"\]")):
            choices.codec_for(models, name, quality, None)


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
