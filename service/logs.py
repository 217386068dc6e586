"""Structured JSON logs: every line, the service's and uvicorn's, one JSON object with the process id.

Each line carries the writing process's `pid` and, once it has claimed one, its worker index
(`worker`, see service.worker_slot: several workers write to one stderr, so repeated lines such as a
model load are told apart by them) and, inside a request, its request id.
"""

from __future__ import annotations

import contextvars
import json
import logging
import logging.config
import os
import time
from dataclasses import dataclass
from typing import Any

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


@dataclass
class RequestNotes:
    """What the error handlers learn about a request that its access line reports."""

    error_code: str | None = None


# Set by the request middleware to a fresh `RequestNotes` per request. The handlers fill it in place:
# a mutable object, so what a handler running in another task or thread writes reaches the access line.
request_notes_var: contextvars.ContextVar[RequestNotes | None] = contextvars.ContextVar("request_notes", default=None)


def note_error_code(code: str) -> None:
    """Record the error code of the current request's answer for its access line (no-op outside a request)."""
    notes = request_notes_var.get()
    if notes is not None:
        notes.error_code = code


# `color_message` is uvicorn's ANSI-coloured copy of its message: not for a JSON line.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}
# One encoder for every line: `json.dumps(..., default=str)` builds a new encoder per call.
_ENCODER = json.JSONEncoder(default=str)
# The process id, read once per process (not per line); a forked child reads its own.
_pid = os.getpid()


_worker: int | None = None  # this process's worker index, once claimed


def _refresh_pid() -> None:
    global _pid, _worker
    _pid = os.getpid()
    _worker = None  # a forked child is another worker


def set_worker_index(index: int) -> None:
    """Put this process's worker index on every line it writes from now on."""
    global _worker
    _worker = index


os.register_at_fork(after_in_child=_refresh_pid)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, request id and any `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as a JSON line."""
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": _pid,
            "message": record.getMessage(),
        }
        if _worker is not None:
            entry["worker"] = _worker
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(entry)


def log_config(level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the service's and uvicorn's loggers: JSON lines on stderr.

    Passed to uvicorn as its `log_config` (so the supervisor's and each worker's own lines are JSON
    too) and applied by `configure_logging`. Loggers created before it keep working
    (`disable_existing_loggers` is off).
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
        "loggers": {
            "service": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            # uvicorn.error and uvicorn.asgi write through their parent's handler; uvicorn sets their levels.
            "uvicorn": {"handlers": ["stderr"], "level": level.upper(), "propagate": False},
            # The service writes its own access line (request id, error code): uvicorn's stays off.
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


def configure_logging(level: str) -> None:
    """Send the `service` and `uvicorn` loggers to stderr as JSON lines."""
    # Our lines carry none of the caller's file, thread or process record fields (the pid is read once
    # per process): skip collecting them for every record (the logging HOWTO's "Optimization"
    # switches; about 14 us of each access line).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.config.dictConfig(log_config(level))
