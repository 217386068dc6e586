"""Several worker processes: requests spread over them, /metrics sums them all, SIGTERM stops them all."""

import os
import re
import signal

from bench.net import http_get
from service.cli import prepare_workers
from service.config import Settings
from tests.service.conftest import png_bytes
from tests.service.server import post_image, running_server

REQUESTS = 24


def _requests_total(text: str) -> float:
    pattern = r'^ae_requests_total\{model="tiny-image",operation="reconstruct",status="200",version="1"\} (\S+)$'
    return sum(float(v) for v in re.findall(pattern, text, re.M))


def test_metrics_sum_every_worker_and_sigterm_stops_them(tiny_models, tmp_path):
    image = png_bytes(40, 30)
    env = {"AE_WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    with running_server(tiny_models, **env) as (process, base):
        assert [post_image(base, "tiny-image", image) for _ in range(REQUESTS)] == [200] * REQUESTS
        # Every scrape is answered by one worker; each must report the requests of both.
        for _ in range(4):
            status, text = http_get(f"{base}/metrics")
            assert status == 200
            assert _requests_total(text) == REQUESTS
            assert re.search(r'^ae_model_loaded\{.*model="tiny-image".*\} 1\.0$', text, re.M)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)


def test_prepare_workers_stops_spinning_and_cleans_the_metrics_folder(tmp_path, monkeypatch):
    # prepare_workers writes os.environ directly. delenv on an unset variable records nothing to
    # undo, so set it first: monkeypatch then restores "unset" after the test instead of leaking
    # AE_THREAD_SPINNING=false into every later test of the session.
    monkeypatch.setenv("AE_THREAD_SPINNING", "true")
    monkeypatch.delenv("AE_THREAD_SPINNING")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "counter_123.db").write_bytes(b"stale")
    prepare_workers(Settings())
    assert os.environ["AE_THREAD_SPINNING"] == "false"
    assert not list(tmp_path.glob("*.db"))


def test_prepare_workers_leaves_no_setting_behind():
    # Runs after the test above (file order): its environment changes must have been undone.
    assert "AE_THREAD_SPINNING" not in os.environ


def test_workers_default_to_the_cores_available(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(12)))
    assert Settings(workers=0).resolved_workers() == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0})
    assert Settings(workers=0).resolved_workers() == 1
    assert Settings(workers=3).resolved_workers() == 3


def test_sequence_sessions_get_one_thread_and_image_sessions_the_cores_per_worker(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: set(range(8)))
    assert Settings().intra_op_threads_for("sequence") == 1
    assert Settings(workers=2).intra_op_threads_for("image") == 4
    assert Settings(workers=8).intra_op_threads_for("image") == 1
    assert Settings(workers=16).intra_op_threads_for("image") == 1  # never fewer than one
    assert Settings(intra_op_threads=3).intra_op_threads_for("sequence") == 3
