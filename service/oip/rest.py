"""The REST form of an OIP inference request and answer, with the binary-tensor extension.

A body is JSON, or, with an `Inference-Header-Content-Length: N` header, N bytes of JSON followed by the
inputs' binary data in the order of the inputs whose `parameters.binary_data_size` says how many bytes
are theirs. Answers are built the same way: outputs asked for as binary (per output `binary_data`, or
the request's `binary_data_output`) follow the JSON; BYTES outputs (images, streams) are always binary,
since JSON strings cannot carry them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from service.errors import DecodingError, InvalidInputError
from service.oip.tensors import Tensor, check_datatype, declared_shape, from_json, from_raw, to_json_data, to_raw

HEADER_LENGTH = "inference-header-content-length"
# Inputs or outputs one request may name: every model here has at most three of either.
MAX_TENSORS = 16


@dataclass(frozen=True)
class RequestedOutput:
    """An output the request names; `binary`: its `binary_data` parameter (None: the request's default)."""

    name: str
    binary: bool | None


@dataclass(frozen=True)
class InferRequest:
    """A parsed inference request, protocol-neutral (REST and gRPC both build one)."""

    id: str
    parameters: dict[str, Any]
    inputs: dict[str, Tensor]
    outputs: list[RequestedOutput] | None  # None: every output of the model
    binary_output: bool = False


def _object(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInputError(f"{what} must be a JSON object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list) or len(value) > MAX_TENSORS:
        raise InvalidInputError(f"{what} must be a list of at most {MAX_TENSORS} entries")
    return value


def header_length(value: str | None, body_length: int) -> int | None:
    """The JSON part's length from `Inference-Header-Content-Length`; 400 when it is not within the body."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 12) or int(value) > body_length:
        raise DecodingError(f"Inference-Header-Content-Length {value!r} is not a length within the body")
    return int(value)


def parse_infer_body(body: bytes, json_length: int | None) -> InferRequest:
    """Parse a REST inference body (the JSON part's length from `header_length`)."""
    split = len(body) if json_length is None else json_length
    try:
        header = orjson.loads(body[:split])
    except orjson.JSONDecodeError as error:
        raise DecodingError(f"the inference request is not valid JSON: {error}") from error
    header = _object(header, "the inference request")
    binary = memoryview(body)[split:]
    inputs: dict[str, Tensor] = {}
    offset = 0
    for raw in _list(header.get("inputs"), "inputs"):
        tensor, used = _input(_object(raw, "an input"), binary[offset:])
        if tensor.name in inputs:
            raise InvalidInputError(f"input {tensor.name!r} is given twice")
        inputs[tensor.name] = tensor
        offset += used
    if offset != len(binary):
        raise DecodingError(f"{len(binary) - offset} bytes of binary data are not claimed by any input")
    parameters = _object(header.get("parameters"), "parameters")
    outputs = None
    if "outputs" in header:
        outputs = [_requested(_object(o, "an output")) for o in _list(header["outputs"], "outputs")]
    request_id = header.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidInputError("id must be a string")
    binary_output = parameters.pop("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise InvalidInputError("parameters.binary_data_output must be true or false")
    return InferRequest(request_id, parameters, inputs, outputs, binary_output)


def _input(raw: dict[str, Any], binary: memoryview) -> tuple[Tensor, int]:
    """One input tensor and how many bytes of the binary data it took."""
    name = raw.get("name")
    if not isinstance(name, str):
        raise InvalidInputError("every input needs a string name")
    datatype = check_datatype(name, raw.get("datatype"))
    shape = declared_shape(name, raw.get("shape"))
    parameters = _object(raw.get("parameters"), f"input {name!r} parameters")
    size = parameters.get("binary_data_size")
    if size is None:
        if "data" not in raw:
            raise InvalidInputError(f"input {name!r} has neither data nor parameters.binary_data_size")
        return from_json(name, datatype, shape, raw["data"]), 0
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(binary):
        raise DecodingError(f"input {name!r}: binary_data_size {size!r} is not within the binary data sent")
    return from_raw(name, datatype, shape, binary[:size]), size


def _requested(raw: dict[str, Any]) -> RequestedOutput:
    name = raw.get("name")
    if not isinstance(name, str):
        raise InvalidInputError("every requested output needs a string name")
    flag = _object(raw.get("parameters"), f"output {name!r} parameters").get("binary_data")
    if flag is not None and not isinstance(flag, bool):
        raise InvalidInputError(f"output {name!r}: binary_data must be true or false")
    return RequestedOutput(name, flag)


def infer_response_body(
    model_name: str, version: str, request: InferRequest, outputs: list[Tensor]
) -> tuple[bytes, dict[str, str]]:
    """The answer's body and headers: JSON, then the binary outputs' bytes when there are any."""
    wanted = {o.name: o.binary for o in request.outputs} if request.outputs is not None else {}
    entries, blobs = [], []
    for tensor in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
        parameters = dict(tensor.parameters)
        binary = wanted.get(tensor.name)
        if tensor.datatype == "BYTES" or (request.binary_output if binary is None else binary):
            blob = to_raw(tensor)
            blobs.append(blob)
            parameters["binary_data_size"] = len(blob)
        else:
            entry["data"] = to_json_data(tensor)
        if parameters:
            entry["parameters"] = parameters
        entries.append(entry)
    answer: dict[str, Any] = {"model_name": model_name, "model_version": version, "outputs": entries}
    if request.id:
        answer["id"] = request.id
    json_part = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return json_part, {"content-type": "application/json"}
    headers = {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(json_part))}
    return b"".join([json_part, *blobs]), headers
