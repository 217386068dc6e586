import json

from service.manifest import load_manifest
from tests.conftest import ECG
from training.cli import main


def test_fit_then_export_end_to_end(tmp_path, capsys):
    run_dir = tmp_path / "run"
    config = tmp_path / "c.toml"
    config.write_text(
        f'[model]\nfamily = "recurrent"\ncell = "gru"\nhidden_size = 8\nlatent_size = 4\n'
        f'[data]\npath = "{ECG}"\nclasses = [1]\n[optim]\nsteps = 8\nval_every = 4\n'
    )
    assert main(["fit", str(config), "--set", "optim.batch_size=8", "--run-dir", str(run_dir), "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 8 and summary["data"]["record"]["counts"]["unit"] == "series"
    assert summary["data"]["record"]["counts"]["train"] > 0
    assert (
        main(
            [
                "export",
                str(run_dir),
                "--name",
                "cli-gru",
                "--models-dir",
                str(tmp_path / "models"),
                "--task",
                "reconstruct",
            ]
        )
        == 0
    )
    exported = json.loads(capsys.readouterr().out)
    assert exported["graphs"] == ["autoencoder", "decoder", "encoder"]
    manifest = load_manifest(tmp_path / "models/cli-gru/1")
    assert manifest.task == "reconstruct" and manifest.training.config["model"]["cell"] == "gru"


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["fit", "--set", "model.family=conv", "--set", "model.depth=2", "--run-dir", str(tmp_path)]) == 2
    assert "unknown ConvConfig keys: depth" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nothing"), "--name", "x"]) == 2
    assert "no checkpoint" in capsys.readouterr().err
