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
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["steps"] == 8 and summary["data"]["record"]["counts"]["unit"] == "series"
    counts = summary["data"]["record"]["counts"]
    assert counts["train"] > 0
    # What was read and what the config kept, before training starts (stderr: stdout is the JSON).
    kept = counts["train"] + counts["val"]
    assert captured.err.splitlines()[0] == (
        f"read 200 series, lengths 140..140, from {ECG}; kept {kept} with labels in classes [1]; "
        f"{counts['train']} train / {counts['val']} val"
    )
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


def test_fit_prints_what_it_read_before_training(tmp_path, capsys):
    # Ten sensors, one column each, a timestamp column and a gap: read as ten series, gap filled, said so.
    rows = [f"2024-01-01T00:{t:02d}," + ",".join(str(s * 10 + t) for s in range(10)) for t in range(24)]
    rows[4] = rows[4].replace(",54,", ",NA,")  # sensor 5 at step 4
    data = tmp_path / "sensors.csv"
    data.write_text("\n".join(["time," + ",".join(f"s{s}" for s in range(10)), *rows]) + "\n")
    argv = [
        "fit",
        "--set",
        "model.family=recurrent",
        "--set",
        "model.hidden_size=4",
        "--set",
        "model.latent_size=2",
        "--set",
        f'data.path="{data}"',
        "--set",
        'data.layout="columns"',
        "--set",
        'data.timestamp_column="time"',
        "--set",
        "optim.steps=2",
        "--set",
        "optim.batch_size=4",
        "--run-dir",
        str(tmp_path / "run"),
        "--no-progress",
    ]
    assert main(argv) == 2
    assert f"{data}: missing value at row 6, column 7 ('s5')" in capsys.readouterr().err
    assert main([*argv, "--set", 'data.missing="interpolate"']) == 0
    captured = capsys.readouterr()
    assert captured.err.splitlines()[0] == (
        f"read 10 series, lengths 24..24, from {data}; one series per column; first row taken as header "
        "(time, s0, s1, s2, ...); column 1 left out as timestamps; 1 missing value interpolated in 1 series; "
        "8 train / 2 val"
    )
    assert json.loads(captured.out)["data"]["record"]["counts"] == {"unit": "series", "train": 8, "val": 2}
