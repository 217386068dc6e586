"""The `model.json` schema: what training writes and the service reads.

The manifest is the only contract between the two packages. Training fills it in at export
time; the service validates it (and the sha256 of each graph) before it loads anything.

Schema versions: 5 adds the optional half-precision variant (`fp16`: float16 copies of graphs with
their measured parity; see `Fp16Variant`); a schema-4 file reads as schema 5 without it.
4 adds the optional gray variant of an RGB image model (`gray_` graphs, their
entropy tables and training record; see `Manifest`); a schema-3 file reads as schema 4 without it.
3 adds the optional `anomaly` calibration of anomaly models (`AnomalyCalibration`);
a schema-2 file reads as schema 3 without it. 2 records the training data as structured fields
(`DataRecord`). Schema 1 kept it
as a JSON string with a path on the training machine; a schema-1 `model.json` still loads, upgraded
on read by `service.manifest_upgrade` (its data hash is then unknown: `None`).
`scripts/migrate_manifests.py` rewrites old files in place and fills the hash in from the data.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from service.manifest_upgrade import upgrade

MANIFEST_FILE = "model.json"

SCHEMA_VERSION: Literal[6] = 6

Task = Literal["compress", "denoise", "embed", "reconstruct"]
GraphRole = Literal["encoder", "decoder", "autoencoder", "gray_encoder", "gray_decoder", "gray_autoencoder"]
GRAY_PREFIX = "gray_"  # a gray variant's graph of role R is `gray_R`, taking and giving one channel

# Which graph each operation runs; an operation is offered only when its graph was exported.
GRAPH_FOR_OPERATION: dict[str, str] = {
    "encode": "encoder",
    "decode": "decoder",
    "reconstruct": "autoencoder",
}


def graph_role(operation: str, gray: bool = False) -> str:
    """The graph an operation runs: its own, or its gray variant's for a single-channel image."""
    role = GRAPH_FOR_OPERATION[operation]
    return GRAY_PREFIX + role if gray else role


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One graph input or output; symbolic axes are strings (`batch`, `height`, `time`)."""

    name: str
    shape: list[int | str]
    dtype: str


class GraphSpec(_Strict):
    """One exported ONNX file and its verified interface."""

    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class ImageInputSpec(_Strict):
    """Images enter as float32 NCHW in `value_range`, padded to `stride_multiple`."""

    kind: Literal["image"] = "image"
    channels: Literal[1, 3]
    dtype: Literal["float32"] = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)
    normalization: Literal["none"] = "none"
    stride_multiple: int = Field(ge=1)
    # A dense bottleneck fixes the spatial size; other sizes are refused, never resized.
    fixed_size: tuple[int, int] | None = None
    max_pixels: int | None = Field(default=None, ge=1)


class SequenceNormalization(_Strict):
    """How raw series values are scaled before the graph sees them (and undone after)."""

    kind: Literal["none", "per_series", "dataset"]
    # Per feature; used only when kind == "dataset".
    mean: list[float] | None = None
    std: list[float] | None = None
    # Floor for standard deviations so a flat series does not divide by zero.
    epsilon: float = 1e-8

    @model_validator(mode="after")
    def _dataset_stats_present(self) -> SequenceNormalization:
        if self.kind == "dataset" and (self.mean is None or self.std is None):
            raise ValueError("dataset normalization needs mean and std")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError("mean and std must have one value per feature")
        return self


class SequenceInputSpec(_Strict):
    """Sequences enter as float32 (batch, time, features) plus int64 lengths."""

    kind: Literal["sequence"] = "sequence"
    features: int = Field(ge=1)
    dtype: Literal["float32"] = "float32"
    normalization: SequenceNormalization
    min_length: int = Field(default=1, ge=1)
    max_length: int = Field(default=4096, ge=1)


InputSpec = Annotated[ImageInputSpec | SequenceInputSpec, Field(discriminator="kind")]


class LatentSpec(_Strict):
    """Shape of the latent without the batch axis.

    `vector`: `shape == [size]`. `spatial`: `shape == [channels, "height/f", "width/f"]` where
    `downsample` is f (or fixed integers when the input size is fixed).
    """

    kind: Literal["vector", "spatial"]
    shape: list[int | str]
    dtype: Literal["float32"] = "float32"
    downsample: int | None = None


class EntropyModelSpec(_Strict):
    """How a compression model's latent is entropy-coded (see `service.codecs.bitstream`).

    `factorized` (the ladder): per-channel integer tables in `file`. `mean-scale-hyperprior` (schema 6,
    service.codecs.hyperprior): `file` holds the hyper-latent's tables, the Gaussian tables and the rate
    levels' gains, `transforms` the hyper transforms that index them.
    """

    kind: Literal["factorized", "mean-scale-hyperprior"] = "factorized"
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    precision: int = Field(ge=8, le=24)
    transforms: str | None = None
    transforms_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")

    @model_validator(mode="after")
    def _transforms_with_hyperprior(self) -> EntropyModelSpec:
        hyperprior = self.kind == "mean-scale-hyperprior"
        if hyperprior != (self.transforms is not None) or (self.transforms is None) != (self.transforms_sha256 is None):
            raise ValueError(
                "a mean-scale-hyperprior entropy model, and only that, names its transforms and their sha256"
            )
        return self


class FileSplit(_Strict):
    """Image folders: every `val_every`-th file by sorted name is validation, the rest trained."""

    kind: Literal["every_nth_file"] = "every_nth_file"
    val_every: int = Field(ge=1)


class SeededSplit(_Strict):
    """Series files: a permutation seeded with `seed` of the series of `classes` in `file`.

    The first round(n * val_fraction) of the permutation are validation, the rest trained; `classes`
    None means every series in the file.
    """

    kind: Literal["seeded_permutation"] = "seeded_permutation"
    file: str
    classes: list[int] | None = None
    val_fraction: float = Field(gt=0, lt=1)
    seed: int


class DataCounts(_Strict):
    """How many items each side of the split held."""

    unit: Literal["images", "series"]
    train: int = Field(ge=0)
    val: int = Field(ge=0)


class DataRecord(_Strict):
    """Which data trained the weights: a data set's name and content, never a path on some machine.

    `sha256` identifies the content training read: for an image folder, the sha256 of one
    `"<relative name> <file sha256>"` line (newline-terminated) per image in sorted order; for a series file, the
    sha256 of the file. `None` only where it was never recorded (a schema-1 manifest upgraded on
    read); `scripts/migrate_manifests.py` fills it in from the data.
    """

    dataset: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    split: Annotated[FileSplit | SeededSplit, Field(discriminator="kind")]
    counts: DataCounts
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")


class TrainingRecord(_Strict):
    """Where the weights came from, so a model card can be checked against it.

    `config` is the run's config less `data.path` (a machine path; `data` names the data set).
    """

    data: DataRecord
    steps: int
    wall_time_s: float
    device: str
    final_validation: dict[str, float]
    config: dict[str, object]


class CalibrationData(_Strict):
    """Which series the calibration scores came from: normal series that training never saw.

    `split` says how they were chosen (for the committed models: half, by a seeded permutation, of
    the training run's held-out normal series; the other half is left for the evaluation).
    """

    dataset: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    file: str
    classes: list[int]
    split: str
    seed: int
    series: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class AnomalyCalibration(_Strict):
    """A `reconstruct` sequence model's calibrated anomaly threshold (`ae-train calibrate`).

    `threshold` is the `quantile` of the reconstruction errors of held-out normal series;
    `calibration_scores` are those errors sorted (every one, or evenly spaced quantiles of them when
    there are many), so the service can say where a score falls among them (its percentile).
    """

    threshold: float = Field(ge=0, allow_inf_nan=False)
    quantile: float = Field(gt=0, lt=1)
    calibration_scores: list[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(min_length=1)
    calibration_data: CalibrationData

    @model_validator(mode="after")
    def _scores_sorted(self) -> AnomalyCalibration:
        scores = self.calibration_scores
        if any(a > b for a, b in itertools.pairwise(scores)):
            raise ValueError("anomaly.calibration_scores must be sorted ascending")
        return self

    def percentile(self, score: float) -> float:
        """Percent of calibration scores at or below `score` (0 to 100)."""
        return 100.0 * bisect.bisect_right(self.calibration_scores, score) / len(self.calibration_scores)


class Fp16Variant(_Strict):
    """Float16 copies of a version's graphs (`ae-train export --fp16`), float32 at their inputs and outputs.

    `parity_max_abs_diff` is, per graph, the largest |fp16 - fp32| over the export's parity inputs,
    in the output's units, measured with the ONNX Runtime build and provider `measured_with` names.
    """

    graphs: dict[GraphRole, GraphSpec]
    parity_max_abs_diff: dict[GraphRole, Annotated[float, Field(ge=0, allow_inf_nan=False)]]
    measured_with: str


class Manifest(_Strict):
    """The full `model.json`."""

    schema_version: Literal[6] = SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int = Field(ge=1)
    family: str
    task: Task
    input: InputSpec
    latent: LatentSpec
    graphs: dict[GraphRole, GraphSpec]
    entropy_model: EntropyModelSpec | None = None
    opset: int
    torch_version: str
    parity_max_abs_diff: float
    training: TrainingRecord
    created: str
    anomaly: AnomalyCalibration | None = None
    # The gray variant of an RGB image model: `gray_` graphs taking and giving one channel, trained on
    # gray images, which the service runs for single-channel inputs (and gray streams, for a codec).
    gray_entropy_model: EntropyModelSpec | None = None
    gray_training: TrainingRecord | None = None
    # Half-precision copies of graphs, run instead of them per AE_PRECISION (service.repository).
    fp16: Fp16Variant | None = None

    @model_validator(mode="before")
    @classmethod
    def _upgrade_old_schemas(cls, raw: object) -> object:
        return upgrade(raw) if isinstance(raw, dict) else raw

    @model_validator(mode="after")
    def _has_a_graph(self) -> Manifest:
        if not self.graphs:
            raise ValueError("a manifest needs at least one graph")
        if self.task == "compress" and (self.entropy_model is None or not {"encoder", "decoder"} <= set(self.graphs)):
            raise ValueError("a compress model needs encoder and decoder graphs and an entropy_model")
        self._check_gray_variant()
        self._check_fp16_variant()
        if self.anomaly is not None and (self.task != "reconstruct" or not isinstance(self.input, SequenceInputSpec)):
            raise ValueError("only a reconstruct model of sequences carries an anomaly calibration")
        return self

    def _check_gray_variant(self) -> None:
        gray = {role for role in self.graphs if role.startswith(GRAY_PREFIX)}
        if not gray and self.gray_entropy_model is None and self.gray_training is None:
            return
        own = {role for role in self.graphs if not role.startswith(GRAY_PREFIX)}
        if not isinstance(self.input, ImageInputSpec) or self.input.channels != 3:
            raise ValueError("only an RGB image model has a gray variant")
        if gray != {GRAY_PREFIX + role for role in own}:
            raise ValueError(f"a gray variant needs one gray_ graph per graph ({sorted(own)}); got {sorted(gray)}")
        if (self.task == "compress") != (self.gray_entropy_model is not None):
            raise ValueError("a compress model's gray variant, and only that, needs gray_entropy_model")
        if self.gray_training is None:
            raise ValueError("a gray variant needs its gray_training record")

    def _check_fp16_variant(self) -> None:
        if self.fp16 is None:
            return
        if self.task == "compress":
            # A codec's encoder rounds its latent to the integers the stream codes and its decoder's
            # pixels are hashed by the golden-stream tests: fp16 would change streams and answers.
            raise ValueError("a compress model's graphs stay fp32 (streams must decode the same everywhere)")
        if not isinstance(self.input, ImageInputSpec):
            # ONNX Runtime 1.31 crashes optimising fp16 copies of the recurrent graphs (training.export_fp16).
            raise ValueError("a sequence model's graphs stay fp32 (no fp16 variant)")
        if not self.fp16.graphs or not set(self.fp16.graphs) <= set(self.graphs):
            raise ValueError(f"fp16 graphs must be some of this version's graphs ({sorted(self.graphs)})")
        if set(self.fp16.parity_max_abs_diff) != set(self.fp16.graphs):
            raise ValueError("fp16.parity_max_abs_diff needs one bound per fp16 graph")
        for role, graph in self.fp16.graphs.items():
            if (graph.inputs, graph.outputs) != (self.graphs[role].inputs, self.graphs[role].outputs):
                raise ValueError(f"fp16 graph {role} must keep the fp32 graph's inputs and outputs")

    @property
    def has_gray_variant(self) -> bool:
        """Whether single-channel images run on graphs of their own (see `graph_role`)."""
        return any(role.startswith(GRAY_PREFIX) for role in self.graphs)

    @property
    def operations(self) -> list[str]:
        """Operations this model supports, derived from the graphs it ships.

        A compression model reconstructs through its bitstream: encoder, entropy coding, decoder.
        """
        if self.task == "compress":
            return ["encode", "decode", "reconstruct"]
        return [op for op, role in GRAPH_FOR_OPERATION.items() if role in self.graphs]


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks so large graphs do not sit in memory twice."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_manifest(folder: Path) -> Manifest:
    """Read and validate `folder/model.json` (raises pydantic.ValidationError or OSError)."""
    return Manifest.model_validate_json((folder / MANIFEST_FILE).read_bytes())
