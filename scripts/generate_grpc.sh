#!/usr/bin/env bash
# Regenerate the gRPC modules of the Open Inference Protocol from service/oip/inference.proto:
#   scripts/generate_grpc.sh          (needs grpcio-tools: the dev environment has it)
# The generated modules are committed, so the service image needs grpcio and protobuf only, not the tools.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
out=service/oip/grpc_generated
"$PYTHON" -m grpc_tools.protoc --proto_path=service/oip --python_out="$out" --pyi_out="$out" \
  --grpc_python_out="$out" service/oip/inference.proto
# protoc writes `import inference_pb2`; the package needs a relative import.
sed -i 's/^import inference_pb2 as inference__pb2/from . import inference_pb2 as inference__pb2/' \
  "$out/inference_pb2_grpc.py"
echo "generated into $out with $("$PYTHON" -m grpc_tools.protoc --version)"
