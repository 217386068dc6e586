"""The micro-batcher: admission, batching of queued requests, and what happens to abandoned ones."""

import asyncio
import threading
import time

import numpy as np
import pytest

from service.batching import BatchPolicy, MicroBatcher, ProcessLoad, merge, split
from service.errors import OverloadedError, RequestTimeoutError
from service.stages import Job, Prepared


class GatedEngine:
    """Doubles its input and records each run's batch size.

    A run whose first value has a gate (`hold(value)`) waits until that gate opens (`release(value)`).
    """

    label = "gated/1/graph.onnx"  # as OnnxEngine names its graph (logs, traces)

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.waiting = 0
        self.gates: dict[float, threading.Event] = {}

    def hold(self, value: float) -> None:
        self.gates[value] = threading.Event()

    def release(self, value: float | None = None) -> None:
        for key, gate in self.gates.items():
            if value is None or key == value:
                gate.set()

    def run(self, feeds):
        gate = self.gates.get(float(feeds["x"][0, 0]))
        if gate is not None:
            self.waiting += 1
            assert gate.wait(10)
            self.waiting -= 1
        self.batches.append(len(feeds["x"]))
        return {"y": feeds["x"] * 2}


BUSY = 9.0  # the value of the request `Harness.busy` holds


def _feeds(value: float, rows: int = 1):
    return {"x": np.full((rows, 3), value, np.float32)}


def _job(key, value: float = 1.0, rows: int = 1, prepare_s: float = 0.0, pixels: int = 0) -> Job:
    def prepare():
        time.sleep(prepare_s)
        return Prepared(key, _feeds(value, rows), rows, pixels)

    return Job(prepare, lambda outputs, rows: outputs["y"])


async def _until(condition, timeout_s: float = 5.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while not condition():
        assert time.perf_counter() < deadline, "condition not reached"
        await asyncio.sleep(0.005)


class Harness:
    """A started batcher on the running loop, its engine, and what it reported as abandoned."""

    def __init__(self, engine: GatedEngine, **policy) -> None:
        options = {"max_batch_size": 8, "max_batch_pixels": 100, "max_wait_s": 0.0, "max_queue": 16, "timeout_s": 5.0}
        options.update(policy)
        self.engine = engine
        self.batcher = MicroBatcher(engine, BatchPolicy(**options))
        self.abandoned: list[tuple[str, str]] = []
        self.batcher.on_abandoned = lambda reason, phase: self.abandoned.append((reason, phase))

    def run(self, job: Job, timeout_s: float = 5.0) -> asyncio.Task:
        deadline = asyncio.get_running_loop().time() + timeout_s
        return asyncio.ensure_future(self.batcher.execute(job, deadline))

    async def busy(self) -> list[asyncio.Task]:
        """Occupy the graph: one request runs inline in its thread, held until `release(BUSY)`."""
        self.engine.hold(BUSY)
        held = [self.run(_job("busy", BUSY))]
        await _until(lambda: self.engine.waiting == 1)
        return held


def _with(engine: GatedEngine, scenario, **policy):
    async def main():
        harness = Harness(engine, **policy)
        harness.batcher.start(ProcessLoad())
        try:
            return await scenario(harness)
        finally:
            engine.release()
            await harness.batcher.stop()

    return asyncio.run(main())


def test_queued_compatible_requests_share_one_run():
    engine = GatedEngine()

    async def scenario(h: Harness):
        held = await h.busy()
        queued = [h.run(_job("k", 1.0)), h.run(_job("k", 2.0, rows=2))]
        await _until(lambda: h.batcher.queued == 2)
        h.engine.release(BUSY)
        await asyncio.gather(*held)
        return await asyncio.gather(*queued)

    first, second = _with(engine, scenario)
    assert engine.batches == [1, 3]  # the held request, then the queued pair as one run
    assert first.tolist() == [[2.0] * 3] and second.tolist() == [[4.0] * 3] * 2


def test_incompatible_shapes_run_apart_and_batches_respect_the_limit():
    engine = GatedEngine()

    async def scenario(h: Harness):
        held = await h.busy()
        queued = [h.run(_job("a", rows=6)), h.run(_job("b")), h.run(_job("a", rows=3))]
        await _until(lambda: h.batcher.queued == 3)
        h.engine.release(BUSY)
        await asyncio.gather(*held, *queued)

    _with(engine, scenario)
    # The held request, then 6 + 3 > 8 rows apart, and "b" (another key) apart.
    assert engine.batches[0] == 1 and sorted(engine.batches[1:]) == [1, 3, 6]


def test_large_images_run_alone_and_small_ones_batch_within_the_pixel_budget():
    engine = GatedEngine()

    async def scenario(h: Harness):
        held = await h.busy()
        small = [h.run(_job("k", pixels=30)) for _ in range(4)]  # 100-pixel budget: three per batch
        large = [h.run(_job("k", pixels=150)) for _ in range(2)]  # over the budget: one per run
        await _until(lambda: h.batcher.queued == 6)
        h.engine.release(BUSY)
        await asyncio.gather(*held, *small, *large)

    _with(engine, scenario)
    assert engine.batches == [1, 3, 1, 1, 1]


def test_a_lone_request_does_not_wait_for_company():
    engine = GatedEngine()

    async def scenario(h: Harness):
        started = time.perf_counter()
        await h.run(_job("k"))
        return time.perf_counter() - started

    assert _with(engine, scenario, max_wait_s=2.0) < 1.0  # far below max_wait: it ran at once


def test_expected_company_is_waited_for():
    engine = GatedEngine()

    async def scenario(h: Harness):
        held = await h.busy()
        first = h.run(_job("k"))
        await _until(lambda: h.batcher.queued == 1)
        late = h.run(_job("k", prepare_s=0.3))  # still preparing when the graph frees up
        h.engine.release(BUSY)
        await asyncio.gather(*held, first, late)

    _with(engine, scenario, max_wait_s=2.0)
    assert engine.batches == [1, 2]


def test_admission_past_the_bound_answers_overloaded_at_once():
    async def scenario(h: Harness):
        async with h.batcher.admit(), h.batcher.admit():
            with pytest.raises(OverloadedError) as refused:
                async with h.batcher.admit():
                    pass
            assert h.batcher.process.in_flight == 2
        assert h.batcher.process.in_flight == 0
        return refused.value

    refused = _with(GatedEngine(), scenario, max_queue=2)
    assert refused.headers["Retry-After"] == "1"


def test_merge_and_split_round_trip():
    parts = [_feeds(1.0, 2), _feeds(2.0, 1)]
    merged = merge(parts)
    assert merged["x"].shape == (3, 3)
    back = split(merged, [2, 1])
    assert [b["x"].shape[0] for b in back] == [2, 1] and back[1]["x"][0, 0] == 2.0
    assert merge([parts[0]])["x"] is parts[0]["x"]  # a batch of one is not copied


@pytest.mark.parametrize("queued", [False, True])
def test_engine_errors_reach_the_request(queued):
    class Broken(GatedEngine):
        def run(self, feeds):
            if feeds["x"][0, 0] == 7.0:
                raise RuntimeError("boom")
            return super().run(feeds)

    async def scenario(h: Harness):
        held = await h.busy() if queued else []
        failing = h.run(_job("k", 7.0))
        if queued:
            await _until(lambda: h.batcher.queued == 1)
            h.engine.release(BUSY)
        return (await asyncio.gather(failing, *held, return_exceptions=True))[0]

    assert isinstance(_with(Broken(), scenario), RuntimeError)


def test_a_cancelled_queued_request_is_dropped_before_it_runs():
    engine = GatedEngine()

    async def scenario(h: Harness):
        held = await h.busy()
        gone = h.run(_job("k", 3.0))
        await _until(lambda: h.batcher.queued == 1)
        gone.cancel()  # what a client disconnect does to the request's task
        await asyncio.gather(gone, return_exceptions=True)
        assert h.batcher.queued == 0
        h.engine.release(BUSY)
        await asyncio.gather(*held)
        await asyncio.sleep(0.05)
        return h.abandoned

    assert _with(engine, scenario) == [("disconnect", "queued")]
    assert engine.batches == [1]  # the held request ran; the cancelled one never did


def test_a_request_past_its_deadline_in_the_queue_is_504_and_never_runs():
    engine = GatedEngine()

    async def scenario(h: Harness):
        held = await h.busy()
        late = h.run(_job("k"), timeout_s=0.1)
        result = (await asyncio.gather(late, return_exceptions=True))[0]
        h.engine.release(BUSY)
        await asyncio.gather(*held)
        await asyncio.sleep(0.05)
        return result, h.abandoned

    result, abandoned = _with(engine, scenario)
    assert isinstance(result, RequestTimeoutError)
    assert abandoned == [("deadline", "queued")] and engine.batches == [1]


def test_a_request_abandoned_while_preparing_is_not_run_inline():
    engine = GatedEngine()

    async def scenario(h: Harness):
        result = (await asyncio.gather(h.run(_job("k", prepare_s=0.3), timeout_s=0.05), return_exceptions=True))[0]
        await asyncio.sleep(0.5)  # the thread finishes preparing meanwhile, and must not run the graph
        return result, h.abandoned

    result, abandoned = _with(engine, scenario)
    assert isinstance(result, RequestTimeoutError)
    assert abandoned == [("deadline", "preparing")] and engine.batches == []


def test_a_running_batch_finishes_and_an_abandoned_result_is_discarded():
    engine = GatedEngine()

    async def scenario(h: Harness):
        held = await h.busy()
        h.engine.hold(8.0)
        late = h.run(_job("k", 8.0), timeout_s=1.0)  # queued behind the busy request, then held in its run
        kept = h.run(_job("k", 8.0))  # shares that run
        await _until(lambda: h.batcher.queued == 2)
        h.engine.release(BUSY)
        await _until(lambda: h.engine.waiting == 1 and h.batcher.queued == 0)
        timed_out = (await asyncio.gather(late, return_exceptions=True))[0]
        h.engine.release(8.0)
        await asyncio.gather(*held)
        return timed_out, await kept, h.abandoned

    timed_out, kept, abandoned = _with(engine, scenario)
    assert isinstance(timed_out, RequestTimeoutError) and kept.tolist() == [[16.0] * 3]
    assert abandoned == [("deadline", "running")] and engine.batches == [1, 2]  # the batch ran to its end
