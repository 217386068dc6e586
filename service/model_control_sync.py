"""The control file: how a load or unload one worker process received reaches the other workers.

`ae-serve` creates a folder and exports it as AE_MODEL_CONTROL_DIR. The worker that applied a load or
unload records it in `model-control.json` there: per model, the last action and the generation it was
recorded at, under a file lock (read, increment the generation, write a temporary file, rename it over
the old one, so a reader sees the old file or the new one, never half of one). Every worker `stat`s
the file about once a second and applies the actions newer than the ones it has applied; a worker that
starts later (a respawn, a SIGHUP reload) reads it at start-up.

Everything here touches the disk: call it in a worker thread.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

CONTROL_FILE = "model-control.json"
Action = Literal["load", "unload"]


@dataclass(frozen=True)
class Order:
    """The last action recorded for a model, and the generation it was recorded at."""

    action: Action
    generation: int


class ControlFile:
    """The shared control file in `folder`."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / CONTROL_FILE
        self._lock_path = folder / (CONTROL_FILE + ".lock")
        self._seen: tuple[int, int] | None = None  # (inode, mtime) of the last file read

    def record(self, name: str, action: Action) -> int:
        """Record `action` for model `name` under a new generation; returns that generation."""
        with self._lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released as the file closes
            generation, orders = self._read()
            generation += 1
            orders[name] = Order(action, generation)
            self._write(generation, orders)
        return generation

    def read_if_changed(self) -> dict[str, Order] | None:
        """The orders, when the file changed since the last read (one `stat` when it did not); else None."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        seen = (stat.st_ino, stat.st_mtime_ns)  # a rename gives a new inode: every write is seen
        if seen == self._seen:
            return None
        self._seen = seen
        return self._read()[1]

    def _read(self) -> tuple[int, dict[str, Order]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return 0, {}
        orders = {name: Order(o["action"], int(o["generation"])) for name, o in data["models"].items()}
        return int(data["generation"]), orders

    def _write(self, generation: int, orders: dict[str, Order]) -> None:
        data = {
            "generation": generation,
            "models": {name: {"action": o.action, "generation": o.generation} for name, o in sorted(orders.items())},
        }
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".model-control-")
        with os.fdopen(handle, "w") as file:
            json.dump(data, file)
        os.replace(temporary, self.path)
