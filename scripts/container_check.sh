#!/usr/bin/env bash
# Build the image and run it the way users do, then talk to it: the CI container check.
# Uses ../shared/docker/engine.sh (a private Docker engine; no registry pulls, see its header).
set -euo pipefail
cd "$(dirname "$0")/.."
ENGINE=${ENGINE:-../shared/docker/engine.sh}
COMPOSE=(docker compose -f docker-compose.yml -f docker-compose.cpu.yml -f docker-compose.ci.yml)

eval "$("$ENGINE" start)"
cleanup() {
  "${COMPOSE[@]}" logs --no-color --tail 40 || true
  "${COMPOSE[@]}" down --timeout 30 || true
  "$ENGINE" stop || true
}
trap cleanup EXIT
"$ENGINE" base python:3.11-slim-bookworm

echo "== hadolint"
hadolint Dockerfile
echo "== compose config (GPU, CPU, CI)"
docker compose -f docker-compose.yml config -q
docker compose -f docker-compose.yml -f docker-compose.cpu.yml config -q
"${COMPOSE[@]}" config -q

echo "== build and start, wait for healthy"
"${COMPOSE[@]}" up -d --build --wait --wait-timeout 300
docker image ls autoencoder-service --format '{{.Repository}}:{{.Tag}} {{.Size}}'

echo "== healthy by the image's own HEALTHCHECK, on the non-default AE_PORT=18000 (compose overrides neither)"
container=$("${COMPOSE[@]}" ps -q autoencoder)
test "$(docker inspect --format '{{.State.Health.Status}}' "$container")" = healthy
docker inspect --format '{{json .Config.Healthcheck.Test}}' "$container" | grep -q 'service.healthcheck'
docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$container" | grep -qx 'AE_PORT=18000'

echo "== talk to it"
python3 scripts/smoke_check.py http://127.0.0.1:18000
