"""Rate limiting per client: a token bucket per IP address, in memory, over the model runs.

Every request that runs a model (every POST) takes one token from its client's bucket; a bucket
holds RATE_LIMIT_BURST tokens and refills at RATE_LIMIT_PER_MINUTE. An empty bucket answers 429
with Retry-After and the usual JSON error. Pages, static files and /healthz are never limited:
one page view fetches many of them.

The buckets live in each worker process (no Redis needed on a single dyno), so with
WEB_CONCURRENCY workers a client may get up to that many times the limit. The client is
request.remote_addr, which create_app takes from X-Forwarded-For only when TRUSTED_PROXY_COUNT
says how many proxies to trust; IPv6 clients are grouped by /64, the block one subscriber gets.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from flask import Flask, current_app, request

from devolearn_web.errors import TooManyRequests

EXTENSION_KEY = "devolearn_rate_limiter"
LIMITED_METHODS = frozenset({"POST"})
# Oldest buckets are forgotten past this many clients, so forged addresses cannot fill memory
# (a forgotten client simply starts again with a full bucket).
MAX_TRACKED_CLIENTS = 10_000
IPV6_CLIENT_PREFIX = 64


class TokenBucketLimiter:
    """Thread-safe token buckets keyed by client: `acquire(key)` -> 0.0 or seconds to wait."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        max_clients: int = MAX_TRACKED_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("RATE_LIMIT_PER_MINUTE must be > 0 and RATE_LIMIT_BURST >= 1")
        self.per_minute = per_minute
        self.burst = burst
        self._refill_per_second = per_minute / 60.0
        self._max_clients = max_clients
        self._clock = clock
        self._lock = threading.Lock()
        # key -> (tokens, time of last update); most recently used last.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, key: str) -> float:
        """Take a token for key: 0.0 when allowed, else the seconds until one is available."""
        with self._lock:
            now = self._clock()
            tokens, updated = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - updated) * self._refill_per_second)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self._refill_per_second
            self._buckets[key] = (tokens, now)
            while len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
            return wait

    def tracked_clients(self) -> int:
        """How many clients have a bucket now."""
        return len(self._buckets)


def client_key(address: str | None) -> str:
    """The bucket key for a client address: the IPv4 address, or the IPv6 /64 it belongs to."""
    if not address:
        return "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped:
            return str(parsed.ipv4_mapped)
        network = ipaddress.IPv6Network((parsed, IPV6_CLIENT_PREFIX), strict=False)
        return str(network)
    return str(parsed)


def limit_model_runs() -> None:
    """before_request hook: 429 when this client's bucket is empty."""
    if request.method not in LIMITED_METHODS:
        return
    limiter: TokenBucketLimiter = current_app.extensions[EXTENSION_KEY]
    wait = limiter.acquire(client_key(request.remote_addr))
    if wait > 0:
        retry_after = max(1, math.ceil(wait))
        raise TooManyRequests(
            f"Too many images from your address: this server analyses up to "
            f"{limiter.per_minute:g} images a minute per visitor (bursts of "
            f"{limiter.burst}). Please wait {retry_after} s and try again.",
            headers={"Retry-After": str(retry_after)},
        )


def init_app(app: Flask) -> None:
    """Install the limiter when RATE_LIMIT_ENABLED (tests leave it off unless they ask)."""
    if not app.config.get("RATE_LIMIT_ENABLED"):
        return
    app.extensions[EXTENSION_KEY] = TokenBucketLimiter(
        per_minute=float(app.config["RATE_LIMIT_PER_MINUTE"]),
        burst=int(app.config["RATE_LIMIT_BURST"]),
    )
    app.before_request(limit_model_runs)
