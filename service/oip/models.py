"""Which OIP model is which: one OIP model per (model, operation), named `MODEL.OPERATION`.

A Triton user sees `image-denoise.reconstruct`, `ecg-embed.encode`, `image-codec-q3.encode`: each takes
and answers tensors named like the `/v1` JSON fields (`image`, `latent`, `image_size`, `stream`,
`bits_per_pixel`, `psnr`, `sequences`, `lengths`, `embeddings`, `reconstructions`, `errors`,
`percentiles`, `anomaly`). The leading dimension of every tensor is the batch: several images, streams or
series in one request. OIP versions are the model's versions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from service.errors import InvalidInputError, NotFoundError
from service.manifest import ImageInputSpec, SequenceInputSpec
from service.model import LoadedModel
from service.oip.tensors import BYTES, TensorSpec
from service.repository import ModelRepository

PLATFORM = "autoencoder-service"
ANY = -1


@dataclass(frozen=True)
class OipModel:
    """One loaded model version seen as the OIP model of one of its operations."""

    model: LoadedModel
    operation: str

    @property
    def name(self) -> str:
        """`MODEL.OPERATION`."""
        return f"{self.model.manifest.name}.{self.operation}"

    @property
    def version(self) -> str:
        """The model version, as OIP spells versions (a string)."""
        return str(self.model.manifest.version)

    def inputs(self) -> list[TensorSpec]:
        """The input tensors this operation takes."""
        return tensor_specs(self.model, self.operation)[0]

    def outputs(self) -> list[TensorSpec]:
        """The output tensors this operation answers."""
        return tensor_specs(self.model, self.operation)[1]

    def metadata(self, versions: list[int]) -> dict[str, Any]:
        """The model metadata answer of `GET /v2/models/{name}` (and gRPC ModelMetadata)."""
        return {
            "name": self.name,
            "versions": [str(v) for v in versions],
            "platform": PLATFORM,
            "inputs": [spec.metadata() for spec in self.inputs()],
            "outputs": [spec.metadata() for spec in self.outputs()],
        }


def _latent_shape(model: LoadedModel) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) else ANY for d in model.manifest.latent.shape)


def tensor_specs(model: LoadedModel, operation: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of one operation of a model, by its kind."""
    spec = model.manifest.input
    image = TensorSpec("image", BYTES, (ANY,))
    if isinstance(spec, ImageInputSpec) and model.tables is not None:  # a codec
        rate = TensorSpec("bits_per_pixel", "FP32", (ANY,))
        stream = TensorSpec("stream", BYTES, (ANY,))
        return {
            "encode": ([image], [stream, rate]),
            "decode": ([stream], [image]),
            "reconstruct": ([image], [image, rate, TensorSpec("psnr", "FP32", (ANY,))]),
        }[operation]
    if isinstance(spec, ImageInputSpec):
        latent = TensorSpec("latent", "FP32", (ANY, *_latent_shape(model)))
        size = TensorSpec("image_size", "INT64", (ANY, 2))
        optional_size = TensorSpec("image_size", "INT64", (ANY, 2), optional=True)
        return {
            "encode": ([image], [latent, size]),
            "decode": ([latent, optional_size], [image]),
            "reconstruct": ([image], [image]),
        }[operation]
    assert isinstance(spec, SequenceInputSpec)
    sequences = TensorSpec("sequences", "FP32", (ANY, ANY, spec.features))
    lengths = TensorSpec("lengths", "INT64", (ANY,), optional=True)
    embeddings = TensorSpec("embeddings", "FP32", (ANY, *_latent_shape(model)))
    reconstructions = TensorSpec("reconstructions", "FP32", (ANY, ANY, spec.features))
    scores = [
        TensorSpec("errors", "FP32", (ANY,)),
        TensorSpec("percentiles", "FP32", (ANY,)),
        TensorSpec("anomaly", "BOOL", (ANY,)),
    ]
    return {
        "encode": ([sequences, lengths], [embeddings]),
        "decode": ([embeddings, TensorSpec("lengths", "INT64", (ANY,))], [reconstructions, lengths]),
        "reconstruct": ([sequences, lengths], [reconstructions, *scores]),
    }[operation]


def parse_version(text: str | None) -> int | None:
    """An OIP version string as a model version; None for the default. 400 when it is not a version number."""
    if text is None or text == "":
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise InvalidInputError(f"model version {text!r} is not a version number")
    return int(text)


def resolve(repository: ModelRepository, name: str, version: str | None) -> OipModel:
    """The OIP model `MODEL.OPERATION` at a version (default: the model's default version).

    404 with the names that do exist when `name` is not one; 404/503 as `/v1` for versions.
    """
    model_name, _, operation = name.rpartition(".")
    if not model_name or operation not in ("encode", "decode", "reconstruct"):
        served = repository.models.get(name)
        hint = ""
        if served:
            operations = next(iter(served.values())).manifest.operations
            hint = f"; it is served as {', '.join(f'{name}.{o}' for o in operations)}"
        raise NotFoundError(f"unknown model {name!r}: OIP models are named MODEL.OPERATION{hint}")
    loaded = repository.get(model_name, parse_version(version))
    loaded.require(operation)
    return OipModel(loaded, operation)


def served_models(repository: ModelRepository) -> list[OipModel]:
    """Every OIP model of every loaded version (the repository index, and tests, list them)."""
    return [OipModel(model, operation) for model in repository.loaded() for operation in model.manifest.operations]
