#!/usr/bin/env bash
# Prepare .gpu-bundle/ (git-ignored) for scripts/gpu_check.sh on a GPU machine with no network: the
# service's wheels that machine's image lacks, for its Python (3.12, x86-64), and wrk with its library.
#
# A device call carries at most 64 MiB (working tree included), and onnxruntime-gpu's wheel alone is
# ~256 MB, so wheels above PART_MB are cut into PART_MB parts (.gpu-bundle/parts/NAME.part-XX) that
# travel one or two per call into /tmp/gpu-parts on the warm machine (docs/gpu.md, "Running the check");
# gpu_check.sh joins them. The rest (.gpu-bundle/wheels, bin, lib: a few MB) travels with the last call.
#
# usage: scripts/gpu_bundle.sh            (here, with PyPI reachable)
set -euo pipefail
cd "$(dirname "$0")/.."
out=.gpu-bundle
PART_MB=${PART_MB:-30}
rm -rf "$out" && mkdir -p "$out/wheels" "$out/parts" "$out/bin" "$out/lib"
# Already in the GPU machine's image (the device tool's KINDS.md), or CUDA libraries its torch brings:
# not carried. Everything else the service pins (requirements/service.txt) is.
present='^(numpy|pillow|protobuf|grpcio|certifi|charset-normalizer|idna|requests|urllib3|anyio|h11|click|pyyaml|uvloop|packaging|pip|typing-extensions|prometheus-client|flatbuffers|lazy-loader|nvidia-.*)=='
grep -E '^[a-z0-9_.-]+==' requirements/service.txt | grep -v -E "$present" >"$out/requirements.txt"
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any \
  -d "$out/wheels" -r "$out/requirements.txt"
# Checksums of the whole wheels: gpu_check.sh verifies the joined parts against them.
(cd "$out/wheels" && sha256sum ./*.whl) >"$out/SHA256SUMS"
for wheel in "$out"/wheels/*.whl; do
  if (($(stat -c %s "$wheel") > PART_MB * 1024 * 1024)); then
    split -b "${PART_MB}m" -d "$wheel" "$out/parts/$(basename "$wheel").part-"
    rm "$wheel"
  fi
done
# wrk (the load generator bench.load uses) and the LuaJIT it links, from this machine's Debian.
if command -v wrk >/dev/null; then
  cp "$(command -v wrk)" "$out/bin/"
  ldd "$(command -v wrk)" | awk '/luajit/ {print $3}' | xargs -r cp -L -t "$out/lib/"
fi
du -sh "$out"/* && ls -l "$out/parts"
