"""Half-precision graphs: `ae-train export RUN --fp16` and `ae-train export --fp16-of models/NAME/VERSION`.

Each fp32 graph of a version gets a float16 copy, `fp16_<role>.onnx`: weights and activations in
float16, inputs and outputs still float32 (a Cast at each boundary), so clients and the service's
stages see the same tensors. The conversion is ONNX Runtime's own (`onnxruntime.transformers.float16`,
shipped with it: no new dependency), which keeps a few ops (Range, Min, Max, Upsample, ...) in float32.

Each copy is checked against its fp32 graph on the export's parity images (odd sizes; a decoder
gets the fp32 encoder's latents of them), and the largest difference is recorded per graph in the manifest's
`fp16` variant together with the runtime that measured it.
A difference above FP16_TOLERANCE x max(1, |fp32 output|) refuses the export. Measured here on ONNX
Runtime's CPU provider, which runs float16 graphs by casting to float32 around kernels it lacks: the
recorded bound is the weights' and activations' rounding at node boundaries; `scripts/gpu_check.sh`
measures the CUDA provider's own float16 kernels against fp32 on the GPU.

Image models only. Codecs are refused: their encoder rounds latents to the integers a stream codes,
and decoded pixels must be the same on every machine (the golden-stream tests hash them). Sequence
models are refused: ONNX Runtime 1.31's CPU provider crashes the process (SIGSEGV) creating a session
of a float16 copy of any of our recurrent graphs at its default optimisation level (ecg-embed,
ecg-anomaly, seed-lstm, series-embed; with optimisations off it runs), with LSTM/GRU kept in float32
too; and a recurrent cell of hidden size 128 steps through time, bound by latency, not arithmetic.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.transformers.float16 import convert_float_to_float16

from service.manifest import (
    GRAY_PREFIX,
    MANIFEST_FILE,
    Fp16Variant,
    GraphSpec,
    ImageInputSpec,
    Manifest,
    load_manifest,
    sha256_of,
)
from training.export import new_version_folder, tensor_specs
from training.graphs import parity_images

FP16_PREFIX = "fp16_"
# float16 keeps 11 significant bits (relative step 4.9e-4); a deep conv net accumulates a few steps.
# 2e-2 of an image's [0, 1] range is five 8-bit levels: a copy worse than that is not a faithful one.
FP16_TOLERANCE = 2e-2


class Fp16ExportError(RuntimeError):
    """A float16 copy is too far from its fp32 graph, or the model cannot have one."""


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the CPU provider warns for every float16 node it cannot constant-fold
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _images(spec: ImageInputSpec, role: str, seed: int) -> list[np.ndarray]:
    """Inputs of an encoder or autoencoder graph (the export's parity images; one channel for gray graphs)."""
    channels = 1 if role.startswith(GRAY_PREFIX) else spec.channels
    return parity_images(channels, spec.stride_multiple, spec.fixed_size, np.random.default_rng(seed))


def parity_feeds(folder: Path, manifest: Manifest, role: str, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Inputs for `role`'s graph of an image model; a decoder's are its fp32 encoder's latents."""
    if not isinstance(manifest.input, ImageInputSpec):
        raise Fp16ExportError("fp16 copies are of image models only")
    if role.removeprefix(GRAY_PREFIX) != "decoder":
        return [{"image": image} for image in _images(manifest.input, role, seed)]
    encoder_role = role.replace("decoder", "encoder")
    if encoder_role not in manifest.graphs:
        raise Fp16ExportError(f"{folder}: a decoder without its encoder has no realistic inputs to check")
    encoder = _session(folder / manifest.graphs[encoder_role].file)
    images = _images(manifest.input, encoder_role, seed)
    return [{"latent": encoder.run(None, {"image": image})[0]} for image in images]


def _worst_difference(
    fp32: ort.InferenceSession, fp16: ort.InferenceSession, feeds: list[dict[str, np.ndarray]]
) -> float:
    worst = 0.0
    for inputs in feeds:
        for want, got in zip(fp32.run(None, inputs), fp16.run(None, inputs), strict=True):
            if got.dtype != want.dtype or got.shape != want.shape:
                raise Fp16ExportError(f"fp16 output {got.dtype}{got.shape} is not fp32's {want.dtype}{want.shape}")
            difference = float(np.abs(got - want).max())
            allowed = FP16_TOLERANCE * max(1.0, float(np.abs(want).max()))
            if not difference <= allowed:  # NaN too
                raise Fp16ExportError(f"fp16 differs from fp32 by {difference:.3g} (> {allowed:.3g})")
            worst = max(worst, difference)
    return worst


def refuse_fp16(task: str, image_model: bool) -> None:
    """Raise when a model of this task and input kind cannot have an fp16 variant (see the module's doc)."""
    if task == "compress":
        raise Fp16ExportError("codec graphs stay fp32: fp16 would change the streams and the decoded pixels")
    if not image_model:
        raise Fp16ExportError("sequence graphs stay fp32: ONNX Runtime 1.31 crashes optimising their fp16 copies")


def add_fp16_graphs(folder: Path, manifest: Manifest) -> Fp16Variant:
    """Write `fp16_<role>.onnx` beside each of `manifest`'s graphs in `folder`, checked; their variant entry."""
    refuse_fp16(manifest.task, isinstance(manifest.input, ImageInputSpec))  # before any session of a copy
    graphs: dict[str, GraphSpec] = {}
    bounds: dict[str, float] = {}
    for role, spec in manifest.graphs.items():
        fp32_path = folder / spec.file
        half = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True)
        path = folder / f"{FP16_PREFIX}{spec.file}"
        onnx.save(half, str(path))
        try:
            bounds[role] = _worst_difference(_session(fp32_path), _session(path), parity_feeds(folder, manifest, role))
        except Fp16ExportError as error:
            raise Fp16ExportError(f"{path.name}: {error}") from error
        graphs[role] = GraphSpec(
            file=path.name,
            sha256=sha256_of(path),
            inputs=tensor_specs(half.graph.input),
            outputs=tensor_specs(half.graph.output),
        )
    return Fp16Variant.model_validate(
        {
            "graphs": {role: g.model_dump() for role, g in graphs.items()},
            "parity_max_abs_diff": bounds,
            "measured_with": f"onnxruntime {ort.__version__} CPUExecutionProvider",
        }
    )


def with_fp16_variant(folder: Path, manifest: Manifest) -> Manifest:
    """`manifest` (written for `folder`) with an fp16 variant of its graphs, written beside them."""
    variant = add_fp16_graphs(folder, manifest)
    return Manifest.model_validate({**manifest.model_dump(), "fp16": variant.model_dump()})


def export_fp16_of(source: Path, models_dir: Path, version: int | None = None) -> Path:
    """A new version of `source`'s model: `source`'s files unchanged plus fp16 copies of its graphs."""
    manifest = load_manifest(source)
    if manifest.fp16 is not None:
        raise Fp16ExportError(f"{source} already has an fp16 variant")
    refuse_fp16(manifest.task, isinstance(manifest.input, ImageInputSpec))
    with new_version_folder(models_dir, manifest.name, version) as (out, version):
        for file in _files_of(manifest):
            shutil.copy2(source / file, out / file)
        renamed = Manifest.model_validate(
            {
                **manifest.model_dump(),
                "version": version,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
        )
        (out / MANIFEST_FILE).write_text(with_fp16_variant(out, renamed).model_dump_json(indent=2) + "\n")
    return out


def _files_of(manifest: Manifest) -> list[str]:
    """Every file a version's manifest names (graphs and entropy tables)."""
    tables = [spec.file for spec in (manifest.entropy_model, manifest.gray_entropy_model) if spec is not None]
    return [graph.file for graph in manifest.graphs.values()] + tables
