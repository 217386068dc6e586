import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from service.codecs.image import pad_to_multiple
from service.manifest import FileSplit, SeededSplit, load_manifest, sha256_of
from tests.conftest import BSDS, ECG, ROOT
from training.checkpoint import restore_model
from training.config import load_config
from training.data import image_files, image_folder_sha256, read_sequences, split_files
from training.export import ExportError, export_run, next_version, verify_symbolic_axes
from training.fit import fit

PARITY = 1e-4  # max abs diff allowed between ONNX Runtime and torch


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _symbolic(value):
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def test_export_writes_graphs_and_a_valid_manifest(tiny_models):
    for name, family, task, steps in (
        ("tiny-image", "conv", "reconstruct", 80),
        ("tiny-seq", "recurrent", "embed", 30),
    ):
        folder = tiny_models / name / "1"
        manifest = load_manifest(folder)
        assert (manifest.family, manifest.task, manifest.version) == (family, task, 1)
        assert sorted(manifest.graphs) == ["autoencoder", "decoder", "encoder"]
        assert manifest.operations == ["encode", "decode", "reconstruct"]
        assert manifest.parity_max_abs_diff <= PARITY
        assert manifest.training.steps == steps and manifest.training.final_validation["loss"] > 0
        for graph in manifest.graphs.values():
            assert sha256_of(folder / graph.file) == graph.sha256


def test_export_records_the_training_data_by_name_and_content_never_by_path(tiny_models):
    image = load_manifest(tiny_models / "tiny-image/1").training.data
    assert (image.dataset, image.split, image.sha256) == ("images", FileSplit(val_every=10), image_folder_sha256(BSDS))
    train_files, val_files = split_files(image_files(BSDS), 10)
    assert (image.counts.unit, image.counts.train, image.counts.val) == ("images", len(train_files), len(val_files))
    series = load_manifest(tiny_models / "tiny-seq/1").training.data
    assert series.dataset == "ecg5000-200" and series.sha256 == sha256_of(ECG)
    assert series.split == SeededSplit(file="ecg5000-200.txt", classes=None, val_fraction=0.2, seed=0)
    count = len(read_sequences(ECG).series)
    assert (series.counts.unit, series.counts.train + series.counts.val) == ("series", count)
    assert series.counts.val == round(count * 0.2)
    for folder in (tiny_models / "tiny-image/1", tiny_models / "tiny-seq/1"):
        text = (folder / "model.json").read_text()
        assert json.loads(text)["schema_version"] == 6
        assert "path" not in json.loads(text)["training"]["config"]["data"]
        assert str(ROOT) not in text and "fixtures" not in text


def test_image_graph_axes_are_symbolic(tiny_models):
    graph = onnx.load(str(tiny_models / "tiny-image/1/autoencoder.onnx")).graph
    assert _symbolic(graph.input[0]) == ["batch", 3, "height", "width"]
    assert _symbolic(graph.output[0]) == ["batch", 3, "height", "width"]
    graph = onnx.load(str(tiny_models / "tiny-seq/1/decoder.onnx")).graph
    assert _symbolic(graph.output[0]) == ["batch", "time", 1]


@pytest.mark.parametrize(("batch", "height", "width"), [(1, 31, 45), (3, 7, 129), (2, 200, 16)])
def test_image_parity_at_new_sizes(tiny_runs, tiny_models, batch, height, width):
    model, _, _ = restore_model(tiny_runs["conv"])
    image = np.random.default_rng(1).random((batch, 3, height, width), dtype=np.float32)
    padded = pad_to_multiple(image, model.config.stride_multiple)
    got = _session(tiny_models / "tiny-image/1/autoencoder.onnx").run(None, {"image": padded})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(image))["x_hat"].numpy()
    assert np.abs(got[..., :height, :width] - want).max() <= PARITY


@pytest.mark.parametrize("lengths", [[3], [500, 2, 77], [1500, 1500]], ids=str)
def test_sequence_parity_at_far_lengths(tiny_runs, tiny_models, lengths):
    model, _, _ = restore_model(tiny_runs["recurrent"])
    rng = np.random.default_rng(2)
    series = rng.standard_normal((len(lengths), max(lengths), 1)).astype(np.float32)
    lengths_array = np.asarray(lengths, dtype=np.int64)
    recon, latent = _session(tiny_models / "tiny-seq/1/autoencoder.onnx").run(
        None, {"sequences": series, "lengths": lengths_array}
    )
    with torch.no_grad():
        out = model(torch.from_numpy(series), torch.from_numpy(lengths_array))
    assert recon.shape == (len(lengths), max(lengths), 1)
    assert np.abs(latent - out["latent"].numpy()).max() <= PARITY
    assert np.abs(recon - out["x_hat"].numpy()).max() <= PARITY


def test_versions_increment_and_are_immutable(tiny_runs, tmp_path):
    first = export_run(tiny_runs["recurrent"], "m", tmp_path)
    second = export_run(tiny_runs["recurrent"], "m", tmp_path, task="reconstruct")
    assert (first.name, second.name) == ("1", "2") and next_version(tmp_path / "m") == 3
    assert json.loads((second / "model.json").read_text())["task"] == "reconstruct"
    with pytest.raises(FileExistsError):
        export_run(tiny_runs["recurrent"], "m", tmp_path, version=1)


def test_dense_and_skip_models_export_what_they_can(tmp_path):
    dense = [
        "model.family=conv",
        "model.widths=[8,16]",
        "model.dense_latent=16",
        "model.input_size=[32,32]",
        "data.crop_size=32",
        "optim.steps=2",
        "optim.val_every=2",
    ]
    skip = [
        "model.family=conv",
        "model.widths=[8,16]",
        "model.skip_connections=true",
        "model.residual=true",
        "data.crop_size=32",
        "data.noise_sigma=[0,50]",
        "optim.steps=2",
        "optim.val_every=2",
    ]
    for name, overrides in (("dense", dense), ("skip", skip)):
        fit(load_config(None, [*overrides, f'data.path="{BSDS}"']), tmp_path / name, progress=False)
        export_run(tmp_path / name, name, tmp_path / "models")
    dense_manifest = load_manifest(tmp_path / "models/dense/1")
    assert dense_manifest.input.fixed_size == (32, 32)
    assert dense_manifest.latent.shape == [16]
    skip_manifest = load_manifest(tmp_path / "models/skip/1")
    assert skip_manifest.task == "denoise" and skip_manifest.operations == ["reconstruct"]
    image = np.random.default_rng(0).random((2, 3, 32, 32), dtype=np.float32)
    out = _session(tmp_path / "models/dense/1/autoencoder.onnx").run(None, {"image": image})[0]
    assert out.shape == (2, 3, 32, 32)


def test_a_baked_axis_is_caught(tmp_path):
    path = tmp_path / "fixed.onnx"
    torch.onnx.export(
        torch.nn.Identity(),
        (torch.rand(2, 3),),
        str(path),
        dynamo=False,
        input_names=["x"],
        output_names=["y"],
    )
    with pytest.raises(ExportError, match="baked in"):
        verify_symbolic_axes(path, {"x": {0: "batch"}})


@pytest.mark.parametrize("views", [4, 8])
def test_self_ensemble_averages_the_graph_over_orientations(tiny_runs, tiny_models, tmp_path, views):
    folder = export_run(tiny_runs["skip"], "tiny-denoise", tmp_path, task="denoise", self_ensemble=views)
    manifest = load_manifest(folder)
    assert manifest.training.config["export"] == {"self_ensemble": views}
    assert manifest.parity_max_abs_diff <= PARITY
    # A non-square padded input: rotations swap its sides.
    image = np.random.default_rng(3).random((2, 3, 24, 40), dtype=np.float32)
    single = _session(tiny_models / "tiny-denoise/1/autoencoder.onnx")
    expected = []
    for view in range(views):
        seen = np.rot90(image, view % 4, (2, 3))
        seen = seen[..., ::-1] if view >= 4 else seen
        out = single.run(None, {"image": np.ascontiguousarray(seen)})[0]
        out = out[..., ::-1] if view >= 4 else out
        expected.append(np.rot90(out, -(view % 4), (2, 3)))
    got = _session(folder / "autoencoder.onnx").run(None, {"image": image})[0]
    assert np.abs(got - np.mean(expected, axis=0)).max() <= PARITY


def test_self_ensemble_is_refused_where_it_cannot_apply(tiny_runs, tmp_path):
    with pytest.raises(ValueError, match="skip-connection"):
        export_run(tiny_runs["conv"], "x", tmp_path, self_ensemble=4)
    with pytest.raises(ValueError, match="conv image models only"):
        export_run(tiny_runs["recurrent"], "y", tmp_path, self_ensemble=4)
    assert not list(tmp_path.iterdir())  # nothing half-written
