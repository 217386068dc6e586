# The inference service: ONNX Runtime (CUDA when the host has a GPU, CPU otherwise), no torch.
# Build:  docker build -t autoencoder-service .                        (CUDA + cuDNN from pip, ~GBs)
#         docker build --build-arg WITH_CUDA=0 -t autoencoder-service:cpu .   (CPU-only, small)
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG WITH_CUDA=1
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY requirements/service.txt ./requirements/
COPY service ./service
# The service's runtime dependencies only, at the versions of the lock (scripts/lock.sh); the CUDA and
# cuDNN libraries come as pip wheels (onnxruntime-gpu's `cuda` and `cudnn` extras, pinned in the same
# lock), so the image needs no CUDA base image. The tracing extra (OpenTelemetry, a few MB) is in, so
# AE_TRACING=otlp works in the container.
RUN /opt/venv/bin/pip install -c requirements/service.txt ".[tracing]" \
    && if [ "$WITH_CUDA" = "1" ]; then \
         /opt/venv/bin/pip install -c requirements/service.txt "onnxruntime-gpu[cuda,cudnn]"; fi \
    && /opt/venv/bin/python -c "import onnxruntime, service.main" \
    && ! /opt/venv/bin/python -c "import torch" 2>/dev/null

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AE_REPOSITORY=/models \
    AE_HOST=0.0.0.0 \
    AE_PORT=8000
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
# Default models baked in; mount a repository over /models to serve others.
COPY models /models
USER 10001
EXPOSE 8000
# Probes /health/ready at AE_HOST and AE_PORT, as ae-serve reads them (service/healthcheck.py), so a
# container started with another AE_PORT is probed where it listens.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-m", "service.healthcheck"]
STOPSIGNAL SIGTERM
CMD ["ae-serve"]
