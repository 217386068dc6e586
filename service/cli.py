"""`ae-serve`: run the service with uvicorn."""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

from service.config import Settings
from service.logs import configure_logging, log_config
from service.memory_budget import available_memory, derived_max_image_pixels
from service.startup import settings_or_exit

logger = logging.getLogger(__name__)


def prepare_workers(settings: Settings) -> None:
    """Settings that several worker processes need, set in the environment they inherit.

    - ONNX Runtime's intra-op threads sleep instead of spinning between runs (unless
      AE_THREAD_SPINNING says otherwise): spinning threads of one worker take cores from the others.
      Measured on 2 cores, 2 workers: 64x64 images at concurrency 32 went from 247 to 316 req/s.
    - A shared folder for Prometheus' multi-process mode, so /metrics sums every worker, not just the
      one that answers the scrape. Stale files from an earlier run are removed.
    - A fresh folder of worker slots (`service.worker_slot`): each worker's index in its log lines.
    """
    if "AE_THREAD_SPINNING" not in os.environ:
        os.environ["AE_THREAD_SPINNING"] = "false"
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder is None:
        folder = tempfile.mkdtemp(prefix="ae-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    for stale in Path(folder).glob("*.db"):
        stale.unlink()
    slots = tempfile.mkdtemp(prefix="ae-workers-")
    os.environ["AE_WORKER_SLOTS_DIR"] = slots
    atexit.register(shutil.rmtree, slots, ignore_errors=True)  # the parent outlives its workers


def prepare_model_control(settings: Settings) -> None:
    """In explicit model control, a fresh folder for the control file the workers share (`service.model_control_sync`).

    Exported as AE_MODEL_CONTROL_DIR unless set: a load or unload one worker receives reaches the
    others (and a respawned worker) through it. Fresh per run: last run's unloads must not apply.
    """
    if settings.model_control == "explicit" and "AE_MODEL_CONTROL_DIR" not in os.environ:
        os.environ["AE_MODEL_CONTROL_DIR"] = tempfile.mkdtemp(prefix="ae-model-control-")


def export_pixel_limit(workers: int) -> None:
    """Derive `AE_MAX_IMAGE_PIXELS` once, unless it is set, so every worker gets the same limit; log it."""
    if "AE_MAX_IMAGE_PIXELS" in os.environ:
        logger.info("AE_MAX_IMAGE_PIXELS=%s (set)", os.environ["AE_MAX_IMAGE_PIXELS"])
        return
    available = available_memory()
    pixels = derived_max_image_pixels(available, workers)
    os.environ["AE_MAX_IMAGE_PIXELS"] = str(pixels)
    logger.info(
        "AE_MAX_IMAGE_PIXELS=%d (derived: %s MB available, workers: %d; see service/memory_budget.py)",
        pixels,
        "unknown" if available is None else available // (1024 * 1024),
        workers,
    )


# uvicorn's exit status for a server, or a worker, that could not start (its app failed to start up).
STARTUP_FAILURE = 3


# How long a restarted worker may take to load and warm its models before it must answer as ready.
# SIGHUP to `ae-serve` replaces the workers one at a time, each new one serving before its old one
# stops, and uvicorn abandons the reload (keeping the old workers) when a new one is not ready in
# time. uvicorn's default, 5 s, is less than loading a repository takes on a busy host. The same
# timeout bounds a health ping to a running worker, which answers from its own thread at once.
WORKER_READY_TIMEOUT_S = 60


def serve_workers(config: uvicorn.Config) -> int:
    """Run several workers under uvicorn's supervisor; STARTUP_FAILURE when one of them could not start.

    uvicorn's own `run` stops every worker when one fails to start (a missing repository, a broken
    model) but then returns normally, so `ae-serve` exited 0 and a process manager saw a clean stop.
    """
    supervisor = Multiprocess(config, sockets=[config.bind_socket()])
    supervisor.run()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        logger.error("a worker could not start (see its log above); ae-serve exits with status %d", STARTUP_FAILURE)
        return STARTUP_FAILURE
    return 0


def main(argv: list[str] | None = None) -> None:
    """Parse flags (defaults from AE_* settings), export them as settings, start uvicorn."""
    defaults = settings_or_exit("ae-serve")
    parser = argparse.ArgumentParser(prog="ae-serve", description="Serve the model repository over HTTP.")
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--repository", type=Path, default=defaults.repository, help="model repository folder")
    parser.add_argument(
        "--version-policy",
        type=Path,
        default=defaults.version_policy,
        help="policy file (default: REPOSITORY/policy.toml)",
    )
    parser.add_argument(
        "--workers", type=int, default=defaults.workers, help="processes, each loads the models (0: one per core)"
    )
    parser.add_argument(
        "--log-level", default=defaults.log_level, choices=["critical", "error", "warning", "info", "debug"]
    )
    args = parser.parse_args(argv)
    # Worker processes build their app from the environment, so flags travel as AE_* variables.
    os.environ["AE_REPOSITORY"] = str(args.repository)
    os.environ["AE_HOST"], os.environ["AE_PORT"] = args.host, str(args.port)  # for the start-up summary
    os.environ["AE_LOG_LEVEL"] = args.log_level
    if args.version_policy is not None:
        os.environ["AE_VERSION_POLICY"] = str(args.version_policy)
    workers = args.workers or defaults.resolved_workers()
    os.environ["AE_WORKERS"] = str(workers)  # a worker divides the cores among this many (intra-op threads)
    if workers > 1:
        prepare_workers(defaults)
    prepare_model_control(defaults)
    configure_logging(args.log_level)
    export_pixel_limit(workers)
    # The service writes its own JSON access line per request (with the request id); uvicorn's is off.
    # uvicorn's own lines (the supervisor's and each worker's) are JSON lines too (`log_config`).
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "workers": workers,
        "log_level": args.log_level,
        "log_config": log_config(args.log_level),
        "access_log": False,
        "timeout_worker_healthcheck": WORKER_READY_TIMEOUT_S,
        "timeout_graceful_shutdown": 30,
        # 503 beyond this many open connections (or running requests) per worker. uvicorn has no
        # deadline for a request's headers: this bounds what half-sent headers can hold open.
        "limit_concurrency": defaults.max_connections or None,
    }
    if workers > 1:
        sys.exit(serve_workers(uvicorn.Config("service.main:app", **options)))
    uvicorn.run("service.main:app", **options)  # exits STARTUP_FAILURE itself when the app cannot start


if __name__ == "__main__":
    main()
