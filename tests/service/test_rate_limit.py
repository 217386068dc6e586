"""Per API key rate limits (issue 14): the token bucket on an injected clock, and a real `ae-serve`."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError

from service.api.rate_limit import RateLimiter, TokenBucket, rate_limiter_for, retry_after_seconds
from service.config import Settings
from service.errors import RateLimitedError
from tests.service.server import running_server


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# ---------------------------------------------------------------- the bucket


def test_a_bucket_starts_full_then_waits_for_its_refill():
    bucket = TokenBucket(rate_per_s=2.0, burst=3, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(0.5)  # one token at 2 per second
    assert bucket.take(0.25) == pytest.approx(0.25)  # half a token has come back meanwhile
    assert bucket.take(0.5) == 0.0
    assert bucket.take(0.5) == pytest.approx(0.5)


def test_a_bucket_never_holds_more_than_its_burst():
    bucket = TokenBucket(rate_per_s=10.0, burst=2, now=0.0)
    idle_for_an_hour = 3600.0
    assert [bucket.take(idle_for_an_hour) for _ in range(3)][:2] == [0.0, 0.0]
    assert bucket.take(idle_for_an_hour) > 0


def test_a_clock_stepping_back_refills_nothing():
    bucket = TokenBucket(rate_per_s=1.0, burst=1, now=100.0)
    assert bucket.take(100.0) == 0.0
    assert bucket.take(50.0) == pytest.approx(1.0)
    assert bucket.take(100.5) == pytest.approx(0.5)  # counted from 100, not from 50


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_a_bucket_refuses_a_zero_rate_or_size(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, now=0.0)


@pytest.mark.parametrize(("wait", "header"), [(0.001, 1), (0.5, 1), (1.0, 1), (1.01, 2), (4.5, 5)])
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(wait, header):
    assert retry_after_seconds(wait) == header


# ---------------------------------------------------------------- the limiter


def test_each_key_has_its_own_bucket_and_a_429_says_when_to_retry():
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=0.25, burst=2, keys=2, clock=clock)
    limiter.check(0)
    limiter.check(0)
    with pytest.raises(RateLimitedError) as refused:
        limiter.check(0)
    assert refused.value.status == 429 and refused.value.code == "rate_limited"
    assert refused.value.headers == {"Retry-After": "4"}  # one token at 0.25 per second
    limiter.check(1)  # the other key is untouched
    clock.now += 4.0
    limiter.check(0)


def test_a_refusal_takes_no_token():
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=1.0, burst=1, keys=1, clock=clock)
    limiter.check(0)
    for _ in range(5):  # a client hammering while limited does not push its retry further away
        with pytest.raises(RateLimitedError):
            limiter.check(0)
    clock.now += 1.0
    limiter.check(0)


def test_a_limited_key_is_logged_by_its_index_never_by_itself(caplog):
    settings = Settings(api_keys=["first-key", "s3cret-key-value"], rate_limit_per_s=1.0, rate_limit_burst=1)
    limiter = rate_limiter_for(settings, FakeClock())
    assert limiter is not None
    limiter.check(1)
    with caplog.at_level(logging.DEBUG, logger="service.api.rate_limit"), pytest.raises(RateLimitedError) as refused:
        limiter.check(1)
    assert "#1" in caplog.text and "s3cret" not in caplog.text
    assert "s3cret" not in refused.value.message


# ---------------------------------------------------------------- settings


def test_rate_limits_are_off_by_default():
    assert rate_limiter_for(Settings(api_keys=["key"])) is None


def test_a_rate_limit_without_api_keys_is_off_with_a_start_up_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="service.api.rate_limit"):
        assert rate_limiter_for(Settings(api_keys=[], rate_limit_per_s=5.0)) is None
    assert "AE_RATE_LIMIT_PER_S is set but AE_API_KEYS is empty" in caplog.text


@pytest.mark.parametrize(("rate", "burst"), [(0.5, 1), (1.0, 1), (2.5, 3), (20.0, 20)])
def test_the_default_burst_is_one_seconds_refill(rate, burst):
    clock = FakeClock()
    limiter = rate_limiter_for(Settings(api_keys=["key"], rate_limit_per_s=rate), clock)
    assert limiter is not None
    for _ in range(burst):
        limiter.check(0)
    with pytest.raises(RateLimitedError):
        limiter.check(0)


@pytest.mark.parametrize("rate", ["-1", "inf", "nan"])
def test_a_negative_or_infinite_rate_stops_start_up(monkeypatch, rate):
    monkeypatch.setenv("AE_RATE_LIMIT_PER_S", rate)
    with pytest.raises(ValidationError):
        Settings()


# ---------------------------------------------------------------- a real server


def _get_models(client: httpx.Client, key: str) -> httpx.Response:
    return client.get("/v1/models", headers={"authorization": f"Bearer {key}"})


def _encode(client: httpx.Client, key: str, body: bytes = b'{"sequences": [[1, 2, 3, 4]]}') -> httpx.Response:
    headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}
    return client.post("/v1/models/tiny-seq/encode", content=body, headers=headers)


def test_a_key_over_its_rate_gets_429_while_others_are_served_and_it_recovers(tiny_models: Path):
    # 3 requests at once, then one every 5 s: the three below take well under 5 s even on a busy machine.
    env = {"AE_API_KEYS": "key-a,key-b", "AE_RATE_LIMIT_PER_S": "0.2", "AE_RATE_LIMIT_BURST": "3"}
    with running_server(tiny_models, **env) as (_, base), httpx.Client(base_url=base, timeout=60) as client:
        assert _get_models(client, "key-a").status_code == 200
        assert _encode(client, "key-a").status_code == 200
        assert _encode(client, "key-a").status_code == 200

        limited = _encode(client, "key-a")
        limited_at = time.monotonic()
        assert limited.status_code == 429, limited.text
        assert limited.json()["error"]["code"] == "rate_limited"
        retry_after = int(limited.headers["retry-after"])
        assert 1 <= retry_after <= 5
        # Checked before the body is read: a body that would be 400 is still 429.
        assert _encode(client, "key-a", body=b"{not json").status_code == 429
        assert _get_models(client, "key-a").status_code == 429
        # A wrong key is 401 first and takes nobody's token.
        assert _encode(client, "key-wrong").status_code == 401

        # The other key, health and metrics are served meanwhile.
        assert _encode(client, "key-b").status_code == 200
        assert _get_models(client, "key-b").status_code == 200
        for _ in range(10):
            assert client.get("/health/live").status_code == 200
            assert client.get("/health/ready").status_code == 200
        assert client.get("/metrics").status_code == 200

        # Retry-After is a promise: after it (plus a margin) the key is served again.
        time.sleep(max(0.0, limited_at + retry_after + 0.5 - time.monotonic()))
        assert _encode(client, "key-a").status_code == 200
