"""The micro-batcher: concurrent compatible requests share a run; idle requests never wait."""

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.batching import MicroBatcher, merge, split
from service.errors import OverloadedError


class RecordingEngine:
    """Doubles its input and records the batch size of every run."""

    def __init__(self, delay: float = 0.0) -> None:
        self.batches: list[int] = []
        self.delay = delay

    def run(self, feeds):
        time.sleep(self.delay)
        self.batches.append(len(feeds["x"]))
        return {"y": feeds["x"] * 2}


def _feeds(value: float, rows: int = 1):
    return {"x": np.full((rows, 3), value, np.float32)}


async def _with_batcher(engine, coroutine, **options):
    settings = {"max_batch_size": 8, "max_wait_ms": 0.0, "max_queue": 4, **options}
    with ThreadPoolExecutor(1) as executor:
        batcher = MicroBatcher(engine, executor, **settings)
        batcher.start()
        try:
            return await coroutine(batcher)
        finally:
            await batcher.stop()


def test_two_concurrent_requests_are_served_as_one_batch():
    engine = RecordingEngine()

    async def two(batcher):
        return await asyncio.gather(batcher.submit("k", _feeds(1.0), 5), batcher.submit("k", _feeds(2.0, 2), 5))

    first, second = asyncio.run(_with_batcher(engine, two))
    assert engine.batches == [3]
    assert first["y"].tolist() == [[2.0] * 3] and second["y"].tolist() == [[4.0] * 3] * 2


def test_incompatible_shapes_run_apart_and_batches_respect_the_limit():
    engine = RecordingEngine()

    async def mixed(batcher):
        return await asyncio.gather(
            batcher.submit("a", _feeds(1.0, 6), 5),
            batcher.submit("b", _feeds(1.0), 5),
            batcher.submit("a", _feeds(1.0, 3), 5),
        )

    asyncio.run(_with_batcher(engine, mixed))
    assert sorted(engine.batches) == [1, 3, 6]  # 6 + 3 > 8 rows, and "b" has another shape


def test_a_lone_request_does_not_wait_for_company():
    engine = RecordingEngine()

    async def lone(batcher):
        started = time.perf_counter()
        await batcher.submit("k", _feeds(1.0), 5)
        return time.perf_counter() - started

    elapsed = asyncio.run(_with_batcher(engine, lone, max_wait_ms=2000.0))
    assert elapsed < 1.0  # far below max_wait: nobody else was coming, so it ran at once


def test_expected_company_is_waited_for():
    engine = RecordingEngine()

    async def staggered(batcher):
        batcher.incoming = 1  # one more request is decoding its body

        async def late():
            await asyncio.sleep(0.05)
            batcher.incoming = 0
            return await batcher.submit("k", _feeds(2.0), 5)

        return await asyncio.gather(batcher.submit("k", _feeds(1.0), 5), late())

    asyncio.run(_with_batcher(engine, staggered, max_wait_ms=1000.0))
    assert engine.batches == [2]


def test_a_full_queue_answers_overloaded_at_once():
    engine = RecordingEngine(delay=0.2)

    async def flood(batcher):
        tasks = [asyncio.ensure_future(batcher.submit(i, _feeds(1.0), 5)) for i in range(8)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(_with_batcher(engine, flood))
    overloaded = [r for r in results if isinstance(r, OverloadedError)]
    assert overloaded and all(r.headers["Retry-After"] == "1" for r in overloaded)
    assert sum(isinstance(r, dict) for r in results) == len(results) - len(overloaded)


def test_merge_and_split_round_trip():
    parts = [_feeds(1.0, 2), _feeds(2.0, 1)]
    merged = merge(parts)
    assert merged["x"].shape == (3, 3)
    back = split(merged, [2, 1])
    assert [b["x"].shape[0] for b in back] == [2, 1] and back[1]["x"][0, 0] == 2.0
    assert merge([parts[0]])["x"] is parts[0]["x"]  # a batch of one is not copied


@pytest.mark.parametrize("rows", [1, 5])
def test_engine_errors_reach_every_waiting_request(rows):
    class Broken(RecordingEngine):
        def run(self, feeds):
            raise RuntimeError("boom")

    async def one(batcher):
        return await asyncio.gather(batcher.submit("k", _feeds(1.0, rows), 5), return_exceptions=True)

    (result,) = asyncio.run(_with_batcher(Broken(), one))
    assert isinstance(result, RuntimeError)


def test_admission_refuses_before_any_work(tiny_models):
    from http import HTTPStatus

    from fastapi.testclient import TestClient

    from service.main import create_app
    from tests.service.conftest import png_bytes, service_settings

    app = create_app(service_settings(tiny_models, max_queue=1))
    with TestClient(app) as client:
        model = app.state.service.repository.get("tiny-image")
        batcher = app.state.runner.batchers[id(model.engine_for("reconstruct"))]
        batcher.admitted = 1  # one request already in flight for this graph
        refused = client.post(
            "/v1/models/tiny-image/reconstruct", content=b"never decoded", headers={"content-type": "image/png"}
        )
        assert refused.status_code == HTTPStatus.SERVICE_UNAVAILABLE
        assert refused.json()["error"]["code"] == "overloaded" and refused.headers["retry-after"] == "1"
        batcher.admitted = 0
        ok = client.post(
            "/v1/models/tiny-image/reconstruct", content=png_bytes(8, 8), headers={"content-type": "image/png"}
        )
        assert ok.status_code == HTTPStatus.OK and batcher.admitted == 0
