"""Model control over gRPC (the protocol's repository extension) with the unmodified `tritonclient.grpc`.

The same real `ae-serve` takes inference and model control on `AE_GRPC_PORT`: a new version loads and
becomes the default, a broken one fails to load while the old one keeps serving, and an unload lets the
requests in flight finish.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from bench.net import free_port
from tests.service.conftest import png_bytes
from tests.service.server import running_server
from tests.service.test_model_control import ADMIN, USER, add_version, repository  # noqa: F401 (fixture)

IMAGE = np.array([png_bytes(384, 384)], dtype=np.object_)  # a few ms per request: some are in flight


def _infer(client: triton.InferenceServerClient, key: str = USER) -> str:
    image = triton.InferInput("image", [1], "BYTES")
    image.set_data_from_numpy(IMAGE)
    answer = client.infer("tiny-image.reconstruct", [image], headers={"authorization": f"Bearer {key}"})
    return str(answer.get_response().model_version)


def test_load_a_new_version_a_broken_one_and_unload_with_requests_in_flight(repository: Path) -> None:  # noqa: F811
    port = free_port()
    env = {
        "AE_GRPC_PORT": str(port),
        "AE_MODEL_CONTROL": "explicit",
        "AE_ADMIN_KEYS": ADMIN,
        "AE_API_KEYS": USER,
    }
    admin = {"authorization": f"Bearer {ADMIN}"}
    with running_server(repository, **env):
        client = triton.InferenceServerClient(f"127.0.0.1:{port}")
        assert _infer(client) == "1"
        with pytest.raises(InferenceServerException, match=r"UNAUTHENTICATED|PERMISSION_DENIED"):
            client.load_model("tiny-image", headers={"authorization": f"Bearer {USER}"})

        add_version(repository, "tiny-image", 1, 2)
        client.load_model("tiny-image", headers=admin)
        assert _infer(client) == "2"

        broken = add_version(repository, "tiny-image", 1, 3)
        graph = next(broken.glob("*.onnx"))
        graph.write_bytes(graph.read_bytes()[:-10] + b"0123456789")  # its sha256 no longer matches
        with pytest.raises(InferenceServerException, match="sha256"):
            client.load_model("tiny-image", headers=admin)
        assert _infer(client) == "2"  # the old version keeps serving
        index = {(m.name, m.version): m for m in client.get_model_repository_index(headers=admin).models}
        assert index[("tiny-image", "3")].state == "UNAVAILABLE" and "sha256" in index[("tiny-image", "3")].reason

        with ThreadPoolExecutor(6) as pool:
            started = [pool.submit(_infer, client) for _ in range(6)]
            time.sleep(0.1)
            client.unload_model("tiny-image", headers=admin)
            unloaded_at = time.monotonic()
            outcomes = []
            for future in started:
                try:
                    outcomes.append(future.result())
                except InferenceServerException as error:
                    outcomes.append(str(error))
        assert "2" in outcomes, outcomes  # requests in flight when the unload began finished
        assert all(o == "2" or "unloaded" in o for o in outcomes), outcomes
        assert time.monotonic() - unloaded_at < 30
        assert not client.is_model_ready("tiny-image.reconstruct", headers={"authorization": f"Bearer {USER}"})
        with pytest.raises(InferenceServerException, match="unloaded"):
            _infer(client)
