"""Export a trained run to `models/NAME/VERSION/`: ONNX graphs, parity check, `model.json`.

Steps, each of which must pass or the half-written version folder is removed:
1. rebuild the model from the run's best checkpoint;
2. export every graph with the TorchScript exporter (`dynamo=False`: with torch 2.13 the dynamo
   exporter keeps the time axis dynamic only for the first recurrent graph in a process);
3. check that every axis meant to be dynamic is symbolic in the saved graph;
4. run ONNX Runtime against torch at three or more new shapes (max abs diff <= tolerance);
5. write the manifest, validated by the service's own schema.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from service.manifest import (
    MANIFEST_FILE,
    DataRecord,
    EntropyModelSpec,
    GraphSpec,
    ImageInputSpec,
    LatentSpec,
    Manifest,
    SequenceInputSpec,
    SequenceNormalization,
    TensorSpec,
    TrainingRecord,
    sha256_of,
)
from service.manifest_upgrade import upgrade_v1
from service.repository import version_folders
from training.checkpoint import restore_model
from training.config import RunConfig
from training.entropy_tables import PRECISION, TABLES_FILE, write_tables
from training.graphs import GraphPlan, graph_plans, parity_inputs
from training.models.codec import CompressionAutoencoder
from training.models.conv import ConvAutoencoder
from training.models.hyperprior import LEARNED_CODECS, HyperpriorCodec
from training.models.recurrent import RecurrentAutoencoder
from training.weights_file import write_weights

OPSET = 17
PARITY_TOLERANCE = 1e-4
_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}


class ExportError(RuntimeError):
    """The exported graph is not faithful to the torch model (axes or parity)."""


@contextmanager
def new_version_folder(models_dir: Path, name: str, version: int | None = None) -> Iterator[tuple[Path, int]]:
    """A new, empty `models_dir/name/VERSION` (the next free version unless given) and its number.

    Versions are immutable, so an existing folder is refused; a block that fails removes the folder
    again, so the service never finds a half-written version.
    """
    version = version or next_version(models_dir / name)
    out = models_dir / name / str(version)
    if out.exists():
        raise FileExistsError(f"{out} already exists; versions are immutable, pick another")
    out.mkdir(parents=True)
    try:
        yield out, version
    except BaseException:
        shutil.rmtree(out)
        raise


def next_version(folder: Path) -> int:
    """One past the highest integer version folder (1 for a new model)."""
    versions = version_folders(folder)
    return int(versions[-1].name) + 1 if versions else 1


def tensor_specs(values: Any) -> list[TensorSpec]:
    """The manifest's description of a graph's inputs or outputs (names, symbolic shapes, dtypes)."""
    specs = []
    for value in values:
        tensor = value.type.tensor_type
        shape = [d.dim_param if d.dim_param else d.dim_value for d in tensor.shape.dim]
        specs.append(TensorSpec(name=value.name, shape=shape, dtype=_ONNX_DTYPES.get(tensor.elem_type, "?")))
    return specs


def _export_graph(plan: GraphPlan, path: Path) -> None:
    torch.onnx.export(
        plan.module,
        plan.example,
        str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=plan.input_names,
        output_names=plan.output_names,
        dynamic_axes=plan.dynamic_axes,
    )


def verify_symbolic_axes(path: Path, dynamic_axes: dict[str, dict[int, str]]) -> None:
    """Every axis declared dynamic must carry a name, not a number, in the saved graph."""
    graph = onnx.load(str(path)).graph
    for value in [*graph.input, *graph.output]:
        dims = value.type.tensor_type.shape.dim
        for axis in dynamic_axes.get(value.name, {}):
            if not dims[axis].dim_param:
                raise ExportError(
                    f"{path.name}: axis {axis} of {value.name!r} was baked in as "
                    f"{dims[axis].dim_value}; it must stay symbolic"
                )


def parity_check(model: nn.Module, plan: GraphPlan, path: Path) -> float:
    """Max abs difference between ONNX Runtime (CPU) and torch over the parity inputs.

    Each output must agree within PARITY_TOLERANCE x max(1, its largest magnitude).
    """
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    # The tolerance scales with an output's magnitude: float32 rounding of a latent in the thousands
    # (a U-Net bottleneck) differs by more than 1e-4 in absolute terms while agreeing to 1e-7 relative.
    for feeds in parity_inputs(model, plan.role):
        onnx_outputs = session.run(None, feeds)
        with torch.no_grad():
            torch_outputs = plan.module(*(torch.from_numpy(feeds[n]) for n in plan.input_names))
        if isinstance(torch_outputs, torch.Tensor):
            torch_outputs = (torch_outputs,)
        for got, want in zip(onnx_outputs, torch_outputs, strict=True):
            if got.shape != tuple(want.shape):
                raise ExportError(f"{path.name}: ONNX shape {got.shape} != torch {tuple(want.shape)}")
            difference = float(np.abs(got - want.numpy()).max())
            allowed = PARITY_TOLERANCE * max(1.0, float(want.abs().max()))
            if difference > allowed:
                raise ExportError(f"{path.name}: ONNX Runtime differs from torch by {difference:.3g} (> {allowed:.3g})")
            worst = max(worst, difference)
    return worst


def input_and_latent(
    model: nn.Module, data_info: dict[str, Any], max_length: int
) -> tuple[ImageInputSpec | SequenceInputSpec, LatentSpec]:
    """The manifest's input and latent specs of a model (`data_info`: a series run's normalization)."""
    if isinstance(model, LEARNED_CODECS):
        f = model.config.stride_multiple
        image = ImageInputSpec(channels=model.config.channels, stride_multiple=f)  # type: ignore[arg-type]
        shape: list[int | str] = [model.config.latent_channels, f"height/{f}", f"width/{f}"]
        return image, LatentSpec(kind="spatial", shape=shape, downsample=f)
    if isinstance(model, ConvAutoencoder):
        cfg = model.config
        image = ImageInputSpec(
            channels=cfg.channels,  # type: ignore[arg-type]  # ConvConfig checks 1 or 3
            stride_multiple=cfg.stride_multiple,
            fixed_size=cfg.input_size,
        )
        f = cfg.stride_multiple
        if cfg.dense_latent is not None:
            return image, LatentSpec(kind="vector", shape=[cfg.dense_latent])
        return image, LatentSpec(kind="spatial", shape=[cfg.latent_channels, f"height/{f}", f"width/{f}"], downsample=f)
    assert isinstance(model, RecurrentAutoencoder)
    normalization = SequenceNormalization.model_validate(data_info["normalization"])
    sequence = SequenceInputSpec(features=model.config.features, normalization=normalization, max_length=max_length)
    return sequence, LatentSpec(kind="vector", shape=[model.config.latent_size])


def default_task(config_dict: dict[str, Any]) -> str:
    """`denoise` for images trained with input noise, `reconstruct` for other images, `embed` for series."""
    if config_dict["model"]["family"] in ("recurrent", "contrastive-recurrent"):
        return "embed"
    if config_dict["model"]["family"] in ("codec", "hyperprior-codec"):
        return "compress"
    return "denoise" if max(config_dict["data"].get("noise_sigma", (0, 0))) > 0 else "reconstruct"


def export_run(
    run_dir: Path,
    name: str,
    models_dir: Path,
    version: int | None = None,
    task: str | None = None,
    max_length: int = 4096,
    self_ensemble: int = 1,
    fp16: bool = False,
    overrides: list[str] | None = None,
) -> Path:
    """Export the run's best checkpoint; returns the new version folder.

    `self_ensemble` > 1 averages the autoencoder graph over that many orientations (see graphs.py);
    `fp16` adds float16 copies of the graphs (training.export_fp16).
    `overrides` (`model.key=value`) set model settings chosen after training that hold no weights (a
    hybrid series embedder's `served_paa_weight`); the manifest records the config with them.
    """
    model, config, state = restore_model(run_dir, overrides=overrides)
    plans = graph_plans(model, self_ensemble)  # refuses a self-ensemble the model cannot have, first
    if fp16:  # refused before anything is written
        from training.export_fp16 import refuse_fp16  # imports this module

        refuse_fp16(task or default_task(config.to_dict()), isinstance(model, (ConvAutoencoder, *LEARNED_CODECS)))
    with new_version_folder(models_dir, name, version) as (out, version):
        graphs, worst = export_graphs(model, plans, out)
        entropy = export_entropy_model(model, out)
        if isinstance(model, HyperpriorCodec):
            # Weights beside the graphs (fp16, every parameter), so anyone can fine-tune the version:
            # `ae-train fit --init-from models/NAME/VERSION` (training.weights_file).
            write_weights(model, config.to_dict()["model"], out)
        final = final_validation(run_dir)
        recorded = recorded_config(config, self_ensemble)
        manifest = _manifest(model, recorded, state, final, name, version, task, max_length, graphs, worst, entropy)
        if fp16:
            from training.export_fp16 import with_fp16_variant  # imports this module

            manifest = with_fp16_variant(out, manifest)
        (out / MANIFEST_FILE).write_text(manifest.model_dump_json(indent=2) + "\n")
    return out


def recorded_config(config: RunConfig, self_ensemble: int) -> dict[str, Any]:
    """A run's config as a manifest records it: no machine path, and the export's self-ensemble."""
    recorded = config.to_dict()
    recorded["data"].pop("path", None)  # a machine path; the manifest's data record names the data set
    if self_ensemble > 1:
        recorded["export"] = {"self_ensemble": self_ensemble}
    return recorded


def export_graphs(
    model: nn.Module, plans: list[GraphPlan], out: Path, prefix: str = ""
) -> tuple[dict[str, GraphSpec], float]:
    """Export, check and describe each planned graph as `out/<prefix><role>.onnx`; the worst parity difference too."""
    graphs, worst = {}, 0.0
    for plan in plans:
        path = out / f"{prefix}{plan.role}.onnx"
        _export_graph(plan, path)
        verify_symbolic_axes(path, plan.dynamic_axes)
        worst = max(worst, parity_check(model, plan, path))
        proto = onnx.load(str(path)).graph
        graphs[prefix + plan.role] = GraphSpec(
            file=path.name,
            sha256=sha256_of(path),
            inputs=tensor_specs(proto.input),
            outputs=tensor_specs(proto.output),
        )
    return graphs, worst


def export_entropy_model(model: nn.Module, out: Path) -> EntropyModelSpec | None:
    """A codec's entropy model beside its graphs (tables; a hyperprior's gains and transforms too), None for others."""
    if isinstance(model, HyperpriorCodec):
        from training.export_hyperprior import export_entropy_model as export_hyperprior

        return export_hyperprior(model, out)
    return export_tables(model, out) if isinstance(model, CompressionAutoencoder) else None


def export_tables(model: CompressionAutoencoder, out: Path, name: str = TABLES_FILE) -> EntropyModelSpec:
    """A codec's integer probability tables beside its graphs, and their manifest entry."""
    tables = write_tables(model, out, name)
    return EntropyModelSpec(file=tables.name, sha256=sha256_of(tables), precision=PRECISION)


def final_validation(run_dir: Path) -> dict[str, float]:
    """The run's final validation metrics (its summary), or none when the run wrote no summary."""
    summary_path = run_dir / "summary.json"
    return json.loads(summary_path.read_text())["final_validation"] if summary_path.is_file() else {}


def training_record(config_dict: dict[str, Any], state: dict[str, Any], final: dict[str, float]) -> TrainingRecord:
    """Where a run's weights came from: its data, steps, time, device, final validation and config."""
    return TrainingRecord(
        data=data_record(state.get("data_info", {}), config_dict),
        steps=int(state["step"]),
        wall_time_s=round(float(state["wall_time_s"]), 2),
        device=str(state.get("device", "cpu")),
        final_validation=final or {"loss": float(state["best_val"])},
        config=config_dict,
    )


def data_record(data_info: dict[str, Any], config_dict: dict[str, Any]) -> DataRecord:
    """The manifest's data record from a run's `data_info`.

    Runs trained before schema 2 kept the old record (a path and counts); it is translated as a
    schema-1 manifest's is, without a content hash (`scripts/migrate_manifests.py` can add it).
    """
    if "record" in data_info:
        return DataRecord.model_validate(data_info["record"])
    old = {"schema_version": 1, "training": {"data": data_info, "config": config_dict}}
    return DataRecord.model_validate(upgrade_v1(old)["training"]["data"])


def _manifest(
    model: nn.Module,
    config_dict: dict[str, Any],
    state: dict[str, Any],
    final: dict[str, float],
    name: str,
    version: int,
    task: str | None,
    max_length: int,
    graphs: dict[str, GraphSpec],
    worst: float,
    entropy: EntropyModelSpec | None = None,
) -> Manifest:
    input_spec, latent = input_and_latent(model, state.get("data_info", {}), max_length)
    record = training_record(config_dict, state, final)
    return Manifest(
        name=name,
        version=version,
        family=config_dict["model"]["family"],
        task=task or default_task(config_dict),  # type: ignore[arg-type]
        input=input_spec,
        latent=latent,
        graphs=graphs,  # type: ignore[arg-type]
        opset=OPSET,
        torch_version=torch.__version__,
        entropy_model=entropy,
        parity_max_abs_diff=worst,
        training=record,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    )
