"""Request and response schemas (and their OpenAPI examples)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from service.manifest import ImageInputSpec, LatentSpec, SequenceInputSpec


class ErrorDetail(BaseModel):
    """A stable machine-readable code and a human message."""

    code: str = Field(examples=["invalid_input"])
    message: str = Field(examples=["sequences[0] holds NaN or Inf"])


class ErrorResponse(BaseModel):
    """Every error answer has this body."""

    error: ErrorDetail


class LiveResponse(BaseModel):
    """The process is up."""

    status: str = "ok"


class ReadyResponse(BaseModel):
    """Models loaded and warmed (503 with the same body while not ready).

    Names only: the reasons are in the log and in `GET /v1/models`.
    """

    ready: bool
    status: Literal["ready", "partial", "failed", "no_models", "loading", "stopping"] = Field(
        description="`partial`: some versions failed and AE_ALLOW_PARTIAL lets the rest serve"
    )
    models: int = Field(description="model versions loaded")
    failed: list[str] = Field(
        default_factory=list, description="`model/version` (or `model`) that failed to load", examples=[["seq/3"]]
    )


class LoadFailureInfo(BaseModel):
    """A model version the version policy names that failed to load, and why."""

    model: str
    version: int | None = Field(description="null: the model as a whole (its rule loads none of its versions)")
    reason: str


class AnomalyInfo(BaseModel):
    """A sequence model's calibrated anomaly threshold: the `quantile` of held-out normal series' errors."""

    threshold: float
    quantile: float


class ModelVersionInfo(BaseModel):
    """One servable version."""

    version: int
    task: str
    family: str
    input: ImageInputSpec | SequenceInputSpec
    latent: LatentSpec
    operations: list[str]
    providers: list[str] = Field(description="ONNX Runtime providers actually in use")
    precision: Literal["fp32", "fp16"] = Field(
        default="fp32", description="fp16: the version runs its float16 graphs (AE_PRECISION), fp32 its own"
    )
    parity_max_abs_diff: float
    training: dict[str, Any]
    anomaly: AnomalyInfo | None = Field(
        default=None, description="the calibrated threshold `reconstruct` flags anomalies by; null: none"
    )
    variable_rate: bool | None = Field(
        default=None,
        description="a codec: whether `encode` and `reconstruct` take `quality`, `target_bpp` or `max_bytes` "
        "(false: a fixed-rate codec, which answers 422 to them); null: not a codec",
        examples=[True],
    )


class ModelInfo(BaseModel):
    """A model, its loaded versions and those the version policy leaves on disk; the highest loaded is the default."""

    name: str
    default_version: int | None = Field(
        description="what requests without a version get: the highest version the policy loads; when it failed "
        "to load, null (those requests are 503) unless AE_ALLOW_PARTIAL, then the highest that loaded"
    )
    versions: list[ModelVersionInfo] = Field(description="the loaded versions: the ones requests can address")
    version_policy: str = Field(
        description="the rule that chose them: `latest N`, `all` or `specific [...]`", examples=["latest 1"]
    )
    not_loaded_versions: list[int] = Field(
        default_factory=list, description="versions on disk that the version policy does not load (404 if addressed)"
    )
    failed_versions: list[int] = Field(
        default_factory=list, description="versions the policy names that failed to load (503 if addressed)"
    )


class ModelsResponse(BaseModel):
    """Every model with a loaded version, and what failed to load (with the reasons)."""

    models: list[ModelInfo]
    failures: list[LoadFailureInfo] = Field(default_factory=list)


class LatentResponse(BaseModel):
    """A latent as JSON: base64 of little-endian float32 values in C order."""

    shape: list[int] = Field(examples=[[12, 8, 8]])
    dtype: str = "float32"
    data: str = Field(description="base64, little-endian float32", examples=["AACAPwAAAEA="])
    image_size: list[int] | None = Field(
        default=None,
        description="original [height, width]; send it back to decode to crop",
        examples=[[61, 64]],
    )
    model: str
    version: int


class SequencesRequest(BaseModel):
    """A batch of variable-length series: lists of numbers, or lists of feature vectors."""

    sequences: list[list[float] | list[list[float]]] = Field(examples=[[[0.1, 0.5, 0.9, 0.4], [1.0, 0.8, 0.2]]])


class WindowedSequencesRequest(SequencesRequest):
    """Series, optionally cut into windows of `window` steps every `stride` steps (long recordings)."""

    window: int | None = Field(
        default=None,
        ge=1,
        description="answer per window of this many steps instead of per series; must fit the model's "
        "min_length..max_length; a series may then be up to AE_MAX_SEQUENCE_LENGTH steps and must be at least "
        "one window long; the windows of a request count toward AE_MAX_BATCH_SEQUENCES",
        examples=[140],
    )
    stride: int | None = Field(
        default=None,
        ge=1,
        description="steps between window starts, from ceil(window / 8) to the window (default: the window); a "
        "tail shorter than a stride gets one last window aligned to the end of the series",
        examples=[70],
    )


class WindowStart(BaseModel):
    """Where a window starts: its series' index in `sequences` and its first step."""

    series: int
    start: int


class ReconstructSequencesRequest(WindowedSequencesRequest):
    """Series to reconstruct and score; `threshold` optionally decides the `anomaly` flags."""

    include_reconstructions: bool = Field(
        default=False,
        description="with `window`: also answer each window's reconstruction (left out by default, since "
        "overlapping windows would repeat the recording); without `window` reconstructions always come and "
        "this is 422",
    )

    threshold: float | None = Field(
        default=None,
        ge=0,
        description="flag series whose error is above this (a finite number >= 0); overrides the model's "
        "calibrated threshold",
        examples=[0.5],
    )


class DecodeSequencesRequest(BaseModel):
    """Embeddings to turn back into series of the given lengths."""

    embeddings: list[list[float]]
    lengths: list[int]


class EmbeddingsResponse(BaseModel):
    """One embedding per input series (per window with `window`)."""

    embeddings: list[list[float]]
    windows: list[WindowStart] | None = Field(
        default=None, description="with `window` in the body: where each embedding's window starts"
    )
    model: str
    version: int


class ReconstructionsResponse(BaseModel):
    """Reconstructions in the caller's units, and per-series errors (MSE after normalisation)."""

    reconstructions: list[list[float] | list[list[float]]] | None = Field(
        default=None,
        description="per series; with `window`, per window and only when `include_reconstructions` is true",
    )
    errors: list[float] = Field(
        description="per-series reconstruction error (per window with `window`); usable as an anomaly score"
    )
    percentiles: list[float] | None = Field(
        default=None,
        description="models with a calibrated threshold: each error's percentile (0-100) among the errors of "
        "held-out normal series the model was calibrated on",
    )
    anomaly: list[bool] | None = Field(
        default=None,
        description="per series, error above the threshold: the body's `threshold`, else the model's calibrated "
        "one; absent when there is neither",
    )
    windows: list[WindowStart] | None = Field(
        default=None, description="with `window` in the body: where each error's window starts"
    )
    model: str
    version: int


class DecodedSequencesResponse(BaseModel):
    """Series decoded from embeddings (normalised units unless the model uses dataset statistics)."""

    reconstructions: list[list[float] | list[list[float]]]
    model: str
    version: int
