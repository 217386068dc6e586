"""`ae-serve`: run the service with uvicorn."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import uvicorn

from service.config import Settings
from service.logs import configure_logging


def main(argv: list[str] | None = None) -> None:
    """Parse flags (defaults from AE_* settings), export them as settings, start uvicorn."""
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="ae-serve", description="Serve the model repository over HTTP.")
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--repository", type=Path, default=defaults.repository, help="model repository folder")
    parser.add_argument("--workers", type=int, default=defaults.workers, help="processes (each loads the models)")
    parser.add_argument(
        "--log-level", default=defaults.log_level, choices=["critical", "error", "warning", "info", "debug"]
    )
    args = parser.parse_args(argv)
    # Worker processes build their app from the environment, so flags travel as AE_* variables.
    os.environ["AE_REPOSITORY"] = str(args.repository)
    os.environ["AE_LOG_LEVEL"] = args.log_level
    configure_logging(args.log_level)
    # The service writes its own JSON access line per request (with the request id); uvicorn's is off.
    uvicorn.run(
        "service.main:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
