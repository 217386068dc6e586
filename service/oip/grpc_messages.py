"""gRPC messages <-> the protocol-neutral forms of `service.oip` (InferRequest, Tensor, parameters)."""

from __future__ import annotations

from typing import Any

import numpy as np

from service.errors import InvalidInputError
from service.oip.grpc_generated import inference_pb2 as pb
from service.oip.rest import MAX_TENSORS, InferRequest, RequestedOutput
from service.oip.tensors import BYTES, Tensor, check_datatype, declared_shape, from_json, from_raw, to_raw

# The typed-contents field of each datatype a client may send that way (raw contents serve every type).
_CONTENTS = {
    "BOOL": "bool_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}


def parameter_values(parameters: Any) -> dict[str, Any]:
    """A protobuf parameter map as plain values (bool, int, str, float)."""
    values = {}
    for name, value in parameters.items():
        choice = value.WhichOneof("parameter_choice")
        values[name] = getattr(value, choice) if choice is not None else None
    return values


def _input(message: Any, raw: bytes | None) -> Tensor:
    name = message.name
    datatype = check_datatype(name, message.datatype)
    shape = declared_shape(name, list(message.shape))
    if raw is not None:
        return from_raw(name, datatype, shape, raw)
    field = _CONTENTS.get(datatype)
    if field is None:
        raise InvalidInputError(f"input {name!r}: send {datatype} data as raw_input_contents")
    values = getattr(message.contents, field)
    if datatype == BYTES:
        if len(values) != int(np.prod(shape)):
            raise InvalidInputError(f"input {name!r}: {len(values)} BYTES elements for shape {list(shape)}")
        return Tensor(name, datatype, shape, list(values))
    return from_json(name, datatype, shape, list(values))


def infer_request(message: Any) -> InferRequest:
    """The InferRequest of a ModelInferRequest (raw or typed contents); 400 for inconsistent messages."""
    if len(message.inputs) > MAX_TENSORS or len(message.outputs) > MAX_TENSORS:
        raise InvalidInputError(f"a request may name at most {MAX_TENSORS} inputs and {MAX_TENSORS} outputs")
    raws = list(message.raw_input_contents)
    if raws and len(raws) != len(message.inputs):
        raise InvalidInputError(f"{len(raws)} raw_input_contents for {len(message.inputs)} inputs")
    inputs: dict[str, Tensor] = {}
    for i, tensor_message in enumerate(message.inputs):
        tensor = _input(tensor_message, raws[i] if raws else None)
        if tensor.name in inputs:
            raise InvalidInputError(f"input {tensor.name!r} is given twice")
        inputs[tensor.name] = tensor
    parameters = parameter_values(message.parameters)
    parameters.pop("binary_data_output", None)  # a REST notion: gRPC answers raw contents anyway
    outputs = [RequestedOutput(o.name, None) for o in message.outputs] or None
    return InferRequest(message.id, parameters, inputs, outputs)


def infer_response(model_name: str, version: str, request_id: str, outputs: list[Tensor]) -> Any:
    """A ModelInferResponse carrying every output as raw contents (what the protocol's clients read)."""
    response = pb.ModelInferResponse(model_name=model_name, model_version=version, id=request_id)
    for tensor in outputs:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
        response.raw_output_contents.append(to_raw(tensor))
    return response
