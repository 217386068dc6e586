"""The Open Inference Protocol (KServe v2, as NVIDIA Triton speaks it) over REST and gRPC, beside `/v1`.

`tensors` (datatypes, the binary and JSON tensor forms), `rest` (the REST body with the binary-tensor
extension), `models` (which OIP model is which model and operation, its metadata and its inference),
`grpc_server` (the same over `inference.GRPCInferenceService`).
"""
