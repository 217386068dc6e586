"""What every OIP inference shares: checks on tensors and parameters, rows run together, outputs picked."""

from __future__ import annotations

from service.errors import InvalidInputError
from service.oip.models import OipModel
from service.oip.rest import InferRequest
from service.oip.tensors import Tensor, TensorSpec


def checked_inputs(oip: OipModel, request: InferRequest) -> dict[str, Tensor]:
    """The request's inputs, each matching the model's spec (name, datatype, rank, fixed sizes); 400 if not."""
    specs = {spec.name: spec for spec in oip.inputs()}
    if unknown := sorted(set(request.inputs) - set(specs)):
        raise InvalidInputError(f"{oip.name} has no input {unknown[0]!r}; its inputs: {', '.join(specs)}")
    for spec in specs.values():
        tensor = request.inputs.get(spec.name)
        if tensor is None:
            if not spec.optional:
                raise InvalidInputError(f"{oip.name} needs input {spec.name!r} ({spec.datatype} {list(spec.shape)})")
            continue
        _check_tensor(oip, spec, tensor)
    return request.inputs


def _check_tensor(oip: OipModel, spec: TensorSpec, tensor: Tensor) -> None:
    fits = len(tensor.shape) == len(spec.shape) and all(
        want in (-1, got) for want, got in zip(spec.shape, tensor.shape, strict=True)
    )
    if tensor.datatype != spec.datatype or not fits:
        raise InvalidInputError(
            f"{oip.name} input {spec.name!r} must be {spec.datatype} of shape {list(spec.shape)} (-1: any); "
            f"got {tensor.datatype} {list(tensor.shape)}"
        )
    if tensor.shape[0] == 0:
        raise InvalidInputError(f"{oip.name} input {spec.name!r} holds no batch rows")


def check_parameters(oip: OipModel, request: InferRequest, known: frozenset[str] = frozenset()) -> None:
    """400 for request parameters the operation does not use (a misspelt one would be silently ignored)."""
    if unknown := sorted(set(request.parameters) - known):
        offered = f"; it takes {', '.join(sorted(known))}" if known else ""
        raise InvalidInputError(f"{oip.name} does not take the parameter {unknown[0]!r}{offered}")


def check_batch(oip: OipModel, rows: int, limit: int, what: str) -> None:
    """413-like 400 when a request holds more rows than one request may."""
    if rows > limit:
        raise InvalidInputError(f"{oip.name}: {rows} {what} in one request exceed the limit of {limit}")


def selected_outputs(oip: OipModel, request: InferRequest, outputs: list[Tensor]) -> list[Tensor]:
    """The outputs the request names, in its order (all computed ones without a list); 400 for unknown names."""
    if request.outputs is None:
        return outputs
    names = [spec.name for spec in oip.outputs()]
    computed = {tensor.name: tensor for tensor in outputs}
    chosen = []
    for wanted in request.outputs:
        if wanted.name not in names:
            raise InvalidInputError(f"{oip.name} has no output {wanted.name!r}; its outputs: {', '.join(names)}")
        if wanted.name not in computed:
            raise InvalidInputError(
                f"{oip.name} answers {wanted.name!r} only when a threshold or calibration applies "
                "(the model's calibration, or parameters.threshold)"
            )
        chosen.append(computed[wanted.name])
    return chosen
