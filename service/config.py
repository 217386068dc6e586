"""Service settings: one `Settings` object, read from `AE_*` environment variables once at start-up."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from service.codecs.tiles import tile_side_problem
from service.memory_budget import available_memory, derived_max_image_pixels

GraphOptimization = Literal["disable", "basic", "extended", "all"]


def _module_missing(name: str) -> bool:
    """Whether `name` cannot be imported here (found without importing it)."""
    try:
        return importlib.util.find_spec(name) is None
    except ModuleNotFoundError:  # a parent package is missing
        return True


def _comma_separated(value: Any, mistake: str) -> Any:
    """A comma-separated env value as a list; `mistake` raised for one that holds no item.

    Empty or blank is "none" (compose's `${AE_API_KEYS:-}`); anything else that holds no item (" , ", a
    stray comma from a template) is a mistake that would, for keys, leave the API open unnoticed.
    """
    if not isinstance(value, str):
        return value
    items = [item.strip() for item in value.split(",") if item.strip()]
    if value.strip() and not items:
        raise ValueError(mistake)
    return items


class Settings(BaseSettings):
    """Every knob of the service; see the README's settings table for what each one does."""

    model_config = SettingsConfigDict(env_prefix="AE_", env_file=None, extra="ignore")

    # Model repository
    repository: Path = Path("models")
    # A version the version policy names that fails to load is skipped with a logged reason, and
    # /health/ready answers 503 while it is missing; true: the versions that loaded are enough to be
    # ready (the failed ones are listed). An empty repository is never ready.
    allow_partial: bool = False
    # Removed (AE_ALLOW_PARTIAL replaces it): set at all, it stops start-up saying so, not silently ignored.
    strict_models: Any = Field(default=None, exclude=True, description="removed: see allow_partial")
    # Which versions load (`service.policy`). Unset: the repository's policy.toml, or the built-in policy
    # (latest 1, codecs all) when it has none; a file named here must exist.
    version_policy: Path | None = Field(default=None, description="policy file instead of <repository>/policy.toml")
    # Versions on disk the policy leaves out are loaded on first use by a stream naming them (`/v1/decode`,
    # a codec's decode route), at most this many at once per worker, the least recently used evicted.
    lazy_max_versions: int = Field(default=2, ge=0, description="versions loaded on demand by streams; 0: off")

    # ONNX Runtime: providers in preference order; unavailable ones are skipped and the ones in use reported.
    providers: list[str] = Field(default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    # 0 = by model kind: sequence graphs get one thread, image graphs the cores divided among the workers
    # (so the workers' threads together do not outnumber the cores). Measured on 2 cores: the ECG LSTM
    # takes 1.5 ms alone on one or two threads, and inside the running server 1.74 ms on one thread vs
    # 1.27 ms on two spinning ones, but two-thread sessions in two workers cost a quarter of the sequence
    # throughput at concurrency 32 (597 vs 734 req/s). Image graphs in two workers, 256x256 photos at
    # concurrency 32: 110 req/s with one thread each, 86 with two (a lone request: 16 vs 11 ms).
    intra_op_threads: int = Field(default=0, ge=0, description="0: one for sequence models, cores/workers else")
    inter_op_threads: int = Field(default=0, ge=0)
    # Which graphs run where a version ships both: its fp32 graphs or its fp16 variant (`ae-train export
    # --fp16`; inputs and outputs stay float32). auto: fp16 where the sessions run on CUDA, fp32 on CPU
    # (ONNX Runtime's CPU provider runs fp16 graphs through casts, no faster); fp16: wherever present.
    precision: Literal["auto", "fp32", "fp16"] = Field(default="auto", description="auto: fp16 graphs on CUDA")
    # Idle intra-op threads busy-wait for the next run by default. With several workers sharing the
    # cores that spinning steals them from each other; `ae-serve` turns it off when it starts several.
    thread_spinning: bool = Field(default=True, description="intra-op threads busy-wait between runs")
    graph_optimization: GraphOptimization = "all"

    # Limits
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1)
    # Counted on the size the graph runs on: the image padded to the model's stride multiple (8 or 16),
    # so a 1 x W image counts as 16 x W. Latents count as the image they decode to, streams as the size
    # their header declares, padded the same way.
    max_image_pixels: int = Field(default=16_777_216, ge=1, description="width * height (4096 x 4096)")
    # Each padded side is capped too: without it a strip one stride thin (16 x 65536 is only 1 Mpx)
    # reaches the graph, whose per-row buffers and run time grow with the side. 16384 holds any WebP
    # (16383 at most) and the widest camera frames; a 1024 x 16384 panorama still fits.
    max_image_side: int = Field(default=16_384, ge=1, description="cap on each padded side (height, width)")
    max_batch_sequences: int = Field(default=256, ge=1)

    max_sequence_length: int = Field(default=100_000, ge=1, description="cap on top of each model's own limit")
    request_timeout_s: float = Field(default=30.0, gt=0)
    # The body is read before a request takes an admission slot, within this deadline (408 and the
    # connection closed after it): a client trickling its body holds a connection, not a model's queue.
    body_read_timeout_s: float = Field(default=10.0, gt=0, description="deadline for receiving the whole body")

    # Access: bearer API keys (none configured = open). Health and metrics stay open unless these are set.
    api_keys: Annotated[list[str], NoDecode] = Field(default_factory=list, description="comma-separated in env")
    # Browsers on these origins (scheme://host[:port], comma-separated in env) may call the API from their
    # pages (CORS). None (the default): no CORS headers at all, so only same-origin pages such as /ui can
    # read answers. "*" allows any origin; the API keys still apply (a page must send one when configured).
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list, description="comma-separated in env")
    auth_health: bool = False
    auth_metrics: bool = False
    # Per API key, per worker process: a token bucket refilled at rate_limit_per_s, holding at most
    # rate_limit_burst tokens; each model listing or inference request takes one (429 when empty).
    # Health and metrics are never limited. Without API keys there is no key to count by, so no limit
    # applies (a start-up warning says so): a client address would be the proxy's behind a load balancer.
    rate_limit_per_s: float = Field(default=0.0, ge=0, allow_inf_nan=False, description="per key; 0: no limit")
    rate_limit_burst: int = Field(default=0, ge=0, description="bucket size; 0: one second's refill, at least 1")

    # Model control (`service.model_control`, docs/model-control.md). none: the repository is read at
    # start-up only. poll: every worker rescans it every poll_interval_s, loading new or changed versions
    # and unloading removed ones. explicit: `POST /v2/repository/models/NAME/load|unload` with an admin key
    # (start-up still loads what the version policy names). The admin keys are not inference keys: a key
    # in both is a start-up error, so handing a client an inference key never hands it model control.
    model_control: Literal["none", "poll", "explicit"] = "none"
    poll_interval_s: float = Field(default=10.0, gt=0, allow_inf_nan=False, description="repository rescan period")
    admin_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="comma-separated in env; needed by model control"
    )
    # Set by `ae-serve` for its workers in explicit mode: the folder of the control file through which a
    # load or unload one worker received reaches the others. Unset (one process): no control file.
    model_control_dir: Path | None = Field(default=None, description="set by ae-serve; workers share it")
    # Set by ae-serve for several workers: where each claims its index (service.worker_slot).
    worker_slots_dir: Path | None = Field(default=None, description="set by ae-serve; workers share it")

    # Micro-batching (per model graph): requests of equal shape share a run, up to max_batch_size rows.
    # max_wait_ms is waited only while more requests are already being decoded; an idle server never waits.
    # The defaults here are the CPU's; on CUDA the three unset ones take service.device_defaults' instead.
    max_batch_size: int = Field(default=16, ge=1)
    # Images batch only while small: a batch of images holds at most this many padded pixels (a larger
    # image runs alone). On 2 cores 256x256 photos served 92 req/s at concurrency 32 one per run and 58
    # in batches of up to 16 (convolutions gain nothing from a batch; its copies and latency remain),
    # while 64x64 ones gain from batching. It also bounds a batch's memory by one image's.
    max_batch_pixels: int = Field(default=65536, ge=1, description="padded pixels per batch of images")
    max_wait_ms: float = Field(default=2.0, ge=0)
    max_queue: int = Field(default=128, ge=1, description="queued requests per graph before 503 overloaded")
    # A sequence encode or reconstruct whose JSON body is up to this size, arriving while the worker
    # process has no other request, is run on the event loop instead of in a worker thread. The thread
    # hop cost 0.64 ms of a 3.2 ms lone sequence request on the 2-core dev machine. Its cost is bounded
    # by the body: the worst 8 KiB body (4000 one-digit steps) took 15.6 ms to encode and 27.5 ms to
    # reconstruct on ecg-embed. Decoding never runs here: its lengths, not its body, set its cost (an
    # 8 KiB decode body took 3.6 s). The loop is blocked only while this worker has no other request. 0: never.
    loop_inline_max_bytes: int = Field(default=8192, ge=0, description="lone small JSON requests skip the thread hop")

    # Responses
    png_compress_level: int = Field(
        default=1, ge=0, le=9, description="1: fpng for 8-bit RGB(A), fastest; 0 and 2-9: Pillow's zlib at that level"
    )

    # Codec streams. With a key, every stream encode writes is signed (HMAC-SHA256 over the whole stream)
    # and decode refuses streams whose tag does not match: the CRC alone catches accidents, not forgery.
    # SecretStr: the key never appears in a repr, a log line or an answer.
    stream_key: SecretStr | None = Field(default=None, description="HMAC key for codec streams; unset: unsigned")
    # With a key, streams without a signature (format 1, or written by a server without a key) are refused
    # unless this is true: for a migration period while stored unsigned streams are still decoded.
    stream_accept_unsigned: bool = False
    # Images with a side above this are coded as independent tiles of this side (service.kinds.codec_tiles):
    # each graph run's memory is then bounded by the tile, not the image. 0: never tile.
    codec_tile_side: int = Field(default=512, ge=0, description="codec tiles above this side; 0: never")

    # HTTP server (ae-serve)
    host: str = "127.0.0.1"
    port: int = 8000
    # The Open Inference Protocol over gRPC (`service.oip.grpc_server`) on this port, beside HTTP; 0: off.
    # Every worker process binds it with SO_REUSEPORT, so the kernel spreads connections over the workers.
    grpc_port: int = Field(default=0, ge=0, le=65535, description="OIP gRPC port; 0: no gRPC server")
    # 0: one worker process per CPU core this process may run on, at most 8. Measured on 2 cores: two
    # workers with one ONNX Runtime thread each served 1.6x the images of one worker with two threads.
    workers: int = Field(default=0, ge=0, description="0: one per available core (at most 8)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    # OpenTelemetry spans per HTTP request and its stages (service.tracing); needs the `tracing` extra.
    tracing: Literal["off", "console", "otlp"] = Field(default="off", description="off, console (stdout) or otlp")
    # Per worker: the CUDA memory all of its sessions may take together (one arena shared by them,
    # service.gpu_memory). Workers x this must fit the card beside the CUDA contexts. 0: no limit.
    gpu_memory_limit_mb: int = Field(default=0, ge=0, description="CUDA memory per worker, MB; 0: no limit")
    # Per worker: uvicorn answers 503 to a request arriving while this many connections are open (or
    # this many requests are running). 0: no limit. uvicorn has no deadline for a request's headers, so
    # this is what bounds connections that never finish sending them.
    max_connections: int = Field(default=1024, ge=0, description="open connections per worker; 0: no limit")

    @field_validator("strict_models")
    @classmethod
    def _strict_models_removed(cls, value: Any) -> Any:
        if value is None:  # not set
            return value
        raise ValueError(
            "AE_STRICT_MODELS was removed: a model version that fails to load now keeps /health/ready at 503 "
            "(the service starts and logs why); set AE_ALLOW_PARTIAL=true to serve the versions that loaded"
        )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        # AE_API_KEYS="key-one,key-two": a comma-separated list reads better in an env file than JSON.
        return _comma_separated(
            value,
            f"AE_API_KEYS={value!r} holds no key: list keys separated by commas, "
            "or leave it empty (or unset) to run without keys",
        )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        # As AE_API_KEYS; an origin carries no path, so a trailing slash is dropped.
        origins = _comma_separated(
            value, f"AE_CORS_ORIGINS={value!r} holds no origin: list origins separated by commas"
        )
        return [origin.rstrip("/") for origin in origins] if isinstance(value, str) else origins

    @field_validator("admin_keys", mode="before")
    @classmethod
    def _split_admin_keys(cls, value: Any) -> Any:
        # As AE_API_KEYS, but a mistake never echoes the value: these keys control what is served.
        return _comma_separated(value, "AE_ADMIN_KEYS holds no key: list keys separated by commas, or leave it empty")

    @model_validator(mode="after")
    def _admin_keys_apart(self) -> Settings:
        admin = {key.get_secret_value() for key in self.admin_keys}
        if admin & set(self.api_keys):
            raise ValueError(
                "AE_ADMIN_KEYS: a key is also in AE_API_KEYS; admin keys must differ from inference keys "
                "(every client holding that inference key could load and unload models)"
            )
        return self

    @field_validator("tracing")
    @classmethod
    def _tracing_installed(cls, value: str) -> str:
        needed = {"console": "opentelemetry.sdk.trace", "otlp": "opentelemetry.exporter.otlp.proto.http"}.get(value)
        if needed is not None and _module_missing(needed):
            raise ValueError(
                f"AE_TRACING={value} needs the OpenTelemetry packages ({needed} is not installed): "
                "pip install 'autoencoder-service[tracing]', or set AE_TRACING=off"
            )
        return value

    @field_validator("codec_tile_side")
    @classmethod
    def _valid_tile_side(cls, value: int) -> int:
        if (problem := tile_side_problem(value)) is not None:
            raise ValueError(f"AE_CODEC_TILE_SIDE={value}: {problem}")
        return value

    @field_validator("stream_key", mode="before")
    @classmethod
    def _stream_key_or_none(cls, value: Any) -> Any:
        # Empty is "no key" (compose's `${AE_STREAM_KEY:-}`); blank is a mistake that would look like a key.
        if isinstance(value, str) and not value.strip():
            if value:
                raise ValueError("AE_STREAM_KEY is blank: set a secret (32 random bytes or more) or leave it empty")
            return None
        return value

    def stream_key_bytes(self) -> bytes | None:
        """The stream signing key as HMAC takes it (UTF-8), or None without one."""
        return None if self.stream_key is None else self.stream_key.get_secret_value().encode("utf-8")

    @model_validator(mode="after")
    def _derive_pixel_limit(self) -> Settings:
        # Unset: the largest image one run of the steepest committed graph can take in this worker's
        # share of the memory available now (service.memory_budget). `ae-serve` derives it once and
        # exports it to its workers.
        if "max_image_pixels" not in self.model_fields_set:
            self.max_image_pixels = derived_max_image_pixels(available_memory(), self.resolved_workers())
        return self

    def intra_op_threads_for(self, input_kind: str) -> int:
        """Intra-op threads of a session for a model taking `input_kind` ("image" or "sequence")."""
        if self.intra_op_threads:
            return self.intra_op_threads
        if input_kind == "sequence":
            return 1
        return max(1, len(os.sched_getaffinity(0)) // self.resolved_workers())

    def resolved_workers(self) -> int:
        """The number of worker processes `ae-serve` starts."""
        if self.workers:
            return self.workers
        return max(1, min(8, len(os.sched_getaffinity(0))))
