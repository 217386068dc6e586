import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ECG
from training.cli import main
from training.evaluate.embeddings import one_nn_accuracy, roc_auc


def test_roc_auc_matches_hand_counts():
    assert roc_auc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert roc_auc(np.array([0.3, 0.4]), np.array([0.1, 0.2])) == 0.0
    assert roc_auc(np.array([0.1, 0.3]), np.array([0.2, 0.3])) == pytest.approx((1 + 0.5 + 1 + 0) / 4)


def test_one_nn_accuracy():
    train = np.array([[0.0, 0.0], [10.0, 10.0]])
    test = np.array([[1.0, 0.0], [9.0, 9.0], [8.0, 9.0]])
    assert one_nn_accuracy(train, np.array([0, 1]), test, np.array([0, 1, 0])) == pytest.approx(2 / 3)


def test_evaluate_embeddings_cli_on_served_models(tiny_models, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "docs/evaluation/tiny-seq/v1"  # the default: the embedding model's name and version
    assert (
        main(
            [
                "evaluate",
                "embeddings",
                "--data",
                str(ECG),
                "--model",
                str(tiny_models / "tiny-seq/1"),
                "--anomaly-model",
                str(tiny_models / "tiny-seq/2"),
            ]
        )
        == 0
    )
    report = json.loads((out / "embeddings.json").read_text())
    assert report == json.loads(capsys.readouterr().out)
    assert report["models"] == {"tiny-seq": [1, 2]}
    assert report["embeddings"]["embedding_dims"] == 6 and report["embeddings"]["raw_dims"] == 140
    assert report["embeddings"]["test_series"] == 40  # a fifth of the 200 committed series
    assert 0.0 <= report["embeddings"]["embedding_1nn_accuracy"] <= 1.0
    assert 0.0 <= report["anomaly"]["roc_auc"] <= 1.0
    assert report["anomaly"]["held_out_normal_series"] + report["anomaly"]["abnormal_series"] == 40
    assert (out / "anomaly_errors.png").stat().st_size > 0 and (out / "embeddings.csv").is_file()


def test_evaluate_images_cli(tiny_models, tmp_path, capsys, monkeypatch):
    from tests.conftest import BSDS

    monkeypatch.chdir(tmp_path)
    assert main(["evaluate", "images", "--images", str(BSDS), "--model", str(tiny_models / "tiny-image")]) == 0
    report = json.loads((tmp_path / "docs/evaluation/tiny-image/v1/images.json").read_text())
    assert report["models"] == {"tiny-image": 1}
    assert report["count"] == 4 and 5.0 < report["mean_psnr_db"] < 60.0  # every 10th of the 40 crops
    assert json.loads(capsys.readouterr().out)["mean_psnr_db"] == report["mean_psnr_db"]


def test_bd_rate_of_a_curve_against_itself_is_zero_and_cheaper_is_negative():
    from training.evaluate.rd import bd_rate, psnr_at_rate

    rates, psnrs = [0.1, 0.25, 0.5, 1.0], [24.0, 27.0, 30.0, 33.0]
    assert abs(bd_rate(rates, psnrs, rates, psnrs)) < 1e-9
    assert bd_rate(rates, psnrs, [r * 0.8 for r in rates], psnrs) == pytest.approx(-20.0, abs=1e-6)
    assert psnr_at_rate(rates, psnrs, 0.25) == pytest.approx(27.0)
    assert np.isnan(psnr_at_rate(rates, psnrs, 2.0))


@pytest.mark.parametrize("gray", [False, True], ids=["rgb", "gray"])
def test_evaluate_codec_cli(tiny_models, tmp_path, gray):
    from tests.conftest import BSDS

    images = tmp_path / "few"
    images.mkdir()
    for name in sorted(p.name for p in BSDS.iterdir())[:2]:
        (images / name).write_bytes((BSDS / name).read_bytes())
    out = tmp_path / "codec"
    args = ["evaluate", "codec", "--images", str(images), "--split", "all", "--models", str(tiny_models / "tiny-codec")]
    assert main([*args, "--out", str(out), *(["--gray"] if gray else [])]) == 0
    report = json.loads((out / "codec.json").read_text())
    assert report["mode"] == ("gray" if gray else "rgb")
    assert report["models"] == {"tiny-codec": 1}
    assert report["count"] == 2 and set(report["curves"]) == {"ours", "JPEG", "WEBP", "AVIF"}
    ours = report["curves"]["ours"][0]
    assert ours["bpp"] > 0 and 0 < ours["ms_ssim"] <= 1 and ours["psnr"] > 5
    assert {"bd_rate_vs_jpeg_percent", "bd_rate_vs_webp_percent", "bd_rate_vs_avif_percent"} <= set(report["summary"])
    # Per image: 1 level of ours, 11 JPEG, 10 WebP and 10 AVIF qualities.
    assert (out / "rd_curves.png").stat().st_size > 0 and (out / "codec.csv").read_text().count("\n") == 1 + 2 * 32


@pytest.mark.parametrize(
    ("levels", "folder"),
    [
        pytest.param(
            [("image-codec-q1", 3), ("image-codec-q2", 3), ("image-codec-q5", 1)], "image-codec/v3", id="ladder"
        ),
        pytest.param([("tiny-codec", 1)], "tiny-codec/v1", id="one-model"),
    ],
)
def test_codec_reports_are_named_by_ladder_and_highest_version(levels, folder):
    from types import SimpleNamespace

    from training.evaluate.codec import ladder_folder

    models = [SimpleNamespace(manifest=SimpleNamespace(name=n, version=v)) for n, v in levels]
    assert ladder_folder(models) == Path("docs/evaluation") / folder


def test_evaluate_denoise_cli(tiny_models, tmp_path):
    from tests.conftest import BSDS

    images = tmp_path / "one"
    images.mkdir()
    name = sorted(p.name for p in BSDS.iterdir())[0]
    from PIL import Image

    Image.open(BSDS / name).crop((0, 0, 96, 80)).save(images / "crop.png")
    out = tmp_path / "denoise"
    assert (
        main(
            [
                "evaluate",
                "denoise",
                "--images",
                str(images),
                "--split",
                "all",
                "--sigma",
                "25",
                "--bm3d-limit",
                "1",
                "--model",
                str(tiny_models / "tiny-denoise"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "denoise.json").read_text())
    assert report["models"] == {"tiny-denoise": 1}
    methods = report["means"]["sigma_25"]["all"]
    assert set(methods) == {"noisy", "ours", "nlm", "bm3d"}
    assert methods["bm3d"]["psnr"] > methods["noisy"]["psnr"]  # BM3D really denoises
    assert 18 < methods["noisy"]["psnr"] < 23  # sigma 25 noise on 8-bit pixels: about 20.5 dB
    assert (out / "denoise_crops.png").stat().st_size > 0


def test_evaluate_images_takes_a_model_name_and_every_file(tiny_models, tmp_path, capsys, monkeypatch):
    from tests.conftest import BSDS

    monkeypatch.chdir(tmp_path)
    argv = ["evaluate", "images", "--images", str(BSDS), "--model", "tiny-image", "--models-dir", str(tiny_models)]
    assert main([*argv, "--split", "all"]) == 0  # the README's `--split all`
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "tiny-image/1" and report["split"] == "all" and report["count"] == 40
    assert main([*argv[:-4], "--model", "tiny-imag", "--models-dir", str(tiny_models)]) == 2
    assert "no model 'tiny-imag': not a path, nor a model under" in capsys.readouterr().err


def test_a_model_is_a_path_or_a_name_under_the_repository(tmp_path, monkeypatch):
    from training.evaluate.served import model_folder

    (tmp_path / "models/image-conv/2").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    models = Path("models")
    assert model_folder("image-conv", models) == models / "image-conv"
    assert model_folder("image-conv/2", models) == models / "image-conv/2"
    assert model_folder("elsewhere", models) == Path("elsewhere")  # a path typed as such wins
    assert model_folder(str(tmp_path / "models/image-conv"), Path("nowhere")) == tmp_path / "models/image-conv"
    with pytest.raises(FileNotFoundError, match="nor a model under models; models there: image-conv"):
        model_folder("image-codec", models)


def test_evaluate_denoise_gray_scores_gray_answers_against_gray_bm3d(tiny_models, tmp_path):
    from PIL import Image

    from tests.conftest import BSDS

    images = tmp_path / "one"
    images.mkdir()
    Image.open(sorted(BSDS.iterdir())[0]).crop((0, 0, 64, 48)).save(images / "crop.png")
    out = tmp_path / "gray"
    args = ["evaluate", "denoise", "--images", str(images), "--split", "all", "--sigma", "25", "--bm3d-limit", "1"]
    assert main([*args, "--gray", "--model", str(tiny_models / "tiny-denoise"), "--out", str(out)]) == 0
    report = json.loads((out / "denoise.json").read_text())
    assert report["mode"] == "gray"
    methods = report["means"]["sigma_25"]["all"]
    assert set(methods) == {"noisy", "ours", "nlm", "bm3d"}
    assert methods["bm3d"]["psnr"] > methods["noisy"]["psnr"]
