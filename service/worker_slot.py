"""Which worker this process is: a small index (0, 1, ...) for log lines, traces and GPU placement.

uvicorn numbers nothing: its workers are interchangeable processes, and a restarted one (SIGHUP, a
crash) is a new process. So each worker claims the lowest free slot in a folder `ae-serve` creates for
the run (AE_WORKER_SLOTS_DIR): slot N is an exclusive `flock` on `N.lock`, held for the life of the
process, and the kernel releases it when the process ends however it ends. A replacement therefore
takes the index of the worker it replaced, or the next one while both run (SIGHUP starts the new
worker before it stops the old). A single worker, or a process outside `ae-serve`, is worker 0.
"""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import IO

# Far above any worker count `ae-serve` allows (8 by default, a few more by hand), so that claiming
# never fails while the run's own workers hold their slots.
MAX_SLOTS = 256

_held: list[IO[bytes]] = []  # the open lock files: closing one would release its slot


def claim_worker_index(folder: Path | None) -> int:
    """The lowest slot under `folder` no live process holds, now held by this one; 0 without a folder."""
    if folder is None:
        return 0
    folder.mkdir(parents=True, exist_ok=True)  # removed under a running server (a tmp cleaner): made again
    for index in range(MAX_SLOTS):
        handle = (folder / f"{index}.lock").open("ab")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held.append(handle)
        return index
    raise RuntimeError(f"all {MAX_SLOTS} worker slots under {folder} are held")
