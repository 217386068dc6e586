"""`ae-train export --fp16` / `--fp16-of`: float16 copies of graphs, float32 at the boundary, parity recorded."""

import filecmp

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import training.export_fp16
from service.manifest import Manifest, load_manifest
from training.cli import main
from training.export import export_run
from training.export_fp16 import FP16_TOLERANCE, Fp16ExportError, export_fp16_of, parity_feeds


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _float16_weights(path):
    return [t for t in onnx.load(str(path)).graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]


def test_export_with_fp16_writes_half_precision_copies_with_their_parity(tiny_runs, tmp_path):
    folder = export_run(tiny_runs["conv"], "tiny-image", tmp_path, fp16=True)
    manifest = load_manifest(folder)
    assert manifest.fp16 is not None and set(manifest.fp16.graphs) == set(manifest.graphs)
    assert manifest.fp16.measured_with.startswith(f"onnxruntime {ort.__version__}")
    for role, graph in manifest.fp16.graphs.items():
        fp32 = manifest.graphs[role]
        assert graph.file == f"fp16_{fp32.file}" and graph.inputs == fp32.inputs and graph.outputs == fp32.outputs
        assert _float16_weights(folder / graph.file), "the copy's weights are float16"
        # Real rounding, and within the export's bound.
        assert 0 < manifest.fp16.parity_max_abs_diff[role] <= FP16_TOLERANCE


def test_fp16_of_a_version_keeps_its_files_and_its_copies_agree_on_new_inputs(tiny_models, tmp_path):
    source = tiny_models / "tiny-denoise" / "1"
    folder = export_fp16_of(source, tmp_path)
    assert folder == tmp_path / "tiny-denoise" / "1"  # the next free version in that repository
    old, new = load_manifest(source), load_manifest(folder)
    assert new.graphs == old.graphs and new.fp16 is not None
    for graph in old.graphs.values():
        assert filecmp.cmp(source / graph.file, folder / graph.file, shallow=False)
    for role, graph in new.fp16.graphs.items():
        fp32, fp16 = _session(folder / old.graphs[role].file), _session(folder / graph.file)
        bound = new.fp16.parity_max_abs_diff[role]
        for feeds in parity_feeds(folder, new, role, seed=7):  # inputs the export did not check
            for want, got in zip(fp32.run(None, feeds), fp16.run(None, feeds), strict=True):
                assert got.dtype == np.float32 and got.shape == want.shape
                assert np.abs(got - want).max() <= max(4 * bound, 1e-3)


def test_codecs_and_sequence_models_stay_fp32(tiny_models, tmp_path):
    with pytest.raises(Fp16ExportError, match="codec graphs stay fp32"):
        export_fp16_of(tiny_models / "tiny-codec" / "1", tmp_path)
    with pytest.raises(Fp16ExportError, match="sequence graphs stay fp32"):
        export_fp16_of(tiny_models / "tiny-seq" / "1", tmp_path)
    assert not list(tmp_path.glob("*/1")), "no half-written version is left"
    raw = load_manifest(tiny_models / "tiny-image" / "1").model_dump()
    fp16 = {
        "graphs": {"encoder": raw["graphs"]["encoder"]},
        "parity_max_abs_diff": {"encoder": 1e-3},
        "measured_with": "x",
    }
    codec = load_manifest(tiny_models / "tiny-codec" / "1").model_dump()
    with pytest.raises(ValueError, match="stay fp32"):
        Manifest.model_validate({**codec, "fp16": fp16})
    sequence = load_manifest(tiny_models / "tiny-seq" / "1").model_dump()
    with pytest.raises(ValueError, match="stay fp32"):
        Manifest.model_validate({**sequence, "fp16": fp16})
    with pytest.raises(ValueError, match="one bound per fp16 graph"):
        Manifest.model_validate({**raw, "fp16": {**fp16, "parity_max_abs_diff": {}}})
    with pytest.raises(ValueError, match="some of this version's graphs"):
        Manifest.model_validate(
            {
                **raw,
                "graphs": {"encoder": raw["graphs"]["encoder"]},
                "fp16": {
                    **fp16,
                    "graphs": {"decoder": raw["graphs"]["decoder"]},
                    "parity_max_abs_diff": {"decoder": 0.0},
                },
            }
        )


def test_the_cli_refuses_a_run_beside_fp16_of(tiny_models, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "runs/x", "--fp16-of", str(tiny_models / "tiny-image" / "1"), "--models-dir", str(tmp_path)])
    assert exit_info.value.code == 2 and "--fp16-of takes no run" in capsys.readouterr().err
    assert main(["export", "--fp16-of", str(tiny_models / "tiny-image" / "1"), "--models-dir", str(tmp_path)]) == 0
    assert load_manifest(tmp_path / "tiny-image" / "1").fp16 is not None


def test_refusals_come_before_anything_is_written(tiny_runs, tiny_models, tmp_path, monkeypatch):
    with pytest.raises(Fp16ExportError, match="sequence graphs stay fp32"):
        export_run(tiny_runs["recurrent"], "tiny-seq", tmp_path, fp16=True)
    assert not (tmp_path / "tiny-seq").exists()
    # A copy beyond the tolerance is refused and its half-written version removed.
    monkeypatch.setattr(training.export_fp16, "FP16_TOLERANCE", 0.0)
    with pytest.raises(Fp16ExportError, match="differs from fp32"):
        export_fp16_of(tiny_models / "tiny-image" / "1", tmp_path)
    assert not (tmp_path / "tiny-image" / "1").exists()
