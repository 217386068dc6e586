#!/usr/bin/env bash
# Builds .venv-kserve: the KServe Python SDK, pytest and PyYAML, apart from the dev venv (kserve's
# pins conflict with ours). tests/deploy/test_kserve_manifests.py checks the manifests in deploy/kserve
# against the SDK's model classes with it:
#   scripts/kserve_venv.sh && .venv-kserve/bin/python -m pytest -q -m kserve \
#       tests/deploy/test_kserve_manifests.py
# Idempotent: a stamp file records the pins it was built with; a rerun with the same pins does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-kserve
PYTHON=${PYTHON:-python3}
# kubernetes below 37: version 37 rewrote its models on pydantic (typing-style openapi_types such as
# List[V1EnvVar]) while kserve 0.21's generated models, which hold them, predate that.
PINS="kserve==0.21.0 kubernetes==36.0.3 pytest==9.2.0 pyyaml==6.0.4"
STAMP=$VENV/.installed

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$PINS" ]; then
    exit 0
fi
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
# shellcheck disable=SC2086  # PINS is a list of requirements
"$VENV/bin/pip" install --quiet --disable-pip-version-check $PINS
echo "$PINS" > "$STAMP"
