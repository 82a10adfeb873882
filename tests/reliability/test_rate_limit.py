"""Rate limiting per client: token buckets in memory, 429 with Retry-After, proxies trusted only
when configured."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from devolearn_web.ratelimit import TokenBucketLimiter, client_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_its_burst_then_refills_at_the_rate():
    clock = FakeClock()
    limiter = TokenBucketLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(1.0)  # one token a second
    clock.now += 0.5
    assert limiter.acquire("a") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.acquire("a") == 0.0
    clock.now += 3600
    assert [limiter.acquire("a") for _ in range(4)][-1] > 0  # refills to the burst, no more


def test_clients_have_their_own_buckets_and_memory_is_bounded():
    limiter = TokenBucketLimiter(per_minute=1, burst=1, max_clients=100, clock=FakeClock())
    assert limiter.acquire("a") == 0.0 and limiter.acquire("a") > 0
    assert limiter.acquire("b") == 0.0
    for index in range(1000):
        limiter.acquire(f"forged-{index}")
    assert limiter.tracked_clients() == 100


def test_invalid_settings_are_refused():
    with pytest.raises(ValueError, match="RATE_LIMIT"):
        TokenBucketLimiter(per_minute=0, burst=5)


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.4", "198.51.100.4"),
        (None, "unknown"),
    ],
)
def test_client_keys_group_an_ipv6_subscriber(address, key):
    assert client_key(address) == key


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def post(client, **kwargs):
    return client.post(
        "/api/v1/predict/membrane", data={"file": (io.BytesIO(png()), "x.png")}, **kwargs
    )


def limited_client(make_app, **overrides):
    settings = {"RATE_LIMIT_ENABLED": True, "RATE_LIMIT_PER_MINUTE": 6, "RATE_LIMIT_BURST": 2}
    return make_app(**{**settings, **overrides}).test_client()


def test_tests_run_without_a_limit_unless_they_ask(client):
    assert all(post(client).status_code == 200 for _ in range(15))


def test_an_empty_bucket_answers_429_with_retry_after(make_app):
    client = limited_client(make_app)
    assert [post(client).status_code for _ in range(2)] == [200, 200]
    refused = post(client)
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "10"  # 6 a minute: one token every 10 s
    answer = refused.get_json()
    assert answer["status"] == 429
    assert "6 images a minute" in answer["error"] and "wait 10 s" in answer["error"]
    assert refused.headers["X-Content-Type-Options"] == "nosniff"


def test_pages_and_health_are_never_limited(make_app):
    client = limited_client(make_app, RATE_LIMIT_BURST=1)
    post(client)
    assert post(client).status_code == 429
    assert all(client.get("/healthz").status_code == 200 for _ in range(10))
    assert client.get("/api/v1/models").status_code == 200
    assert client.get("/membrane").status_code == 200


def test_each_client_address_has_its_own_bucket(make_app):
    client = limited_client(make_app, RATE_LIMIT_BURST=1)
    assert post(client, environ_base={"REMOTE_ADDR": "198.51.100.1"}).status_code == 200
    assert post(client, environ_base={"REMOTE_ADDR": "198.51.100.1"}).status_code == 429
    assert post(client, environ_base={"REMOTE_ADDR": "198.51.100.2"}).status_code == 200


def test_forwarded_for_is_ignored_unless_a_proxy_is_trusted(make_app):
    client = limited_client(make_app, RATE_LIMIT_BURST=1)
    post(client)
    # A forged header does not buy a fresh bucket.
    forged = post(client, headers={"X-Forwarded-For": "192.0.2.99"})
    assert forged.status_code == 429


def test_behind_a_trusted_proxy_the_last_forwarded_address_is_the_client(make_app):
    client = limited_client(make_app, RATE_LIMIT_BURST=1, TRUSTED_PROXY_COUNT=1)
    first = {"X-Forwarded-For": "192.0.2.10"}
    assert post(client, headers=first).status_code == 200
    assert post(client, headers=first).status_code == 429
    # A client that prepends a forged address is still known by what the proxy appended.
    spoofed = {"X-Forwarded-For": "192.0.2.200, 192.0.2.10"}
    assert post(client, headers=spoofed).status_code == 429
    assert post(client, headers={"X-Forwarded-For": "192.0.2.11"}).status_code == 200
