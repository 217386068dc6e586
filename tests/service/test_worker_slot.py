"""Worker indexes: the lowest slot no live process holds, released when its process ends."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from service.worker_slot import claim_worker_index

HOLDER = """
import sys, time
from pathlib import Path
from service.worker_slot import claim_worker_index
print(claim_worker_index(Path(sys.argv[1])), flush=True)
time.sleep(60)
"""


def test_a_process_without_a_slots_folder_is_worker_0() -> None:
    assert claim_worker_index(None) == 0


def test_slots_are_distinct_while_held_and_reused_once_their_process_ends(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "0"
        assert claim_worker_index(tmp_path) == 1  # 0 is held by the other process
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10
    while (index := claim_worker_index(tmp_path)) != 0:  # its lock went with it
        assert time.monotonic() < deadline, index
        time.sleep(0.1)
