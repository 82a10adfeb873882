"""Memory admission per worker: every model run reserves the memory it will need from one budget
shared by the requests in flight, so a worker never takes more than its share of the dyno.

A request's need is estimated before any pixel is decoded, from the upload's headers (pixels,
channels, bytes per sample, frames) and what is asked for (the model's task, a download, the
figures): devolearn_web.memory_estimate. Then:

- the request body is reserved as soon as it arrives (Content-Length), before it is parsed;
- the whole need once the headers are read; a request that does not fit waits (first come,
  first served) up to MEMORY_WAIT_SECONDS, then gets a 503 with Retry-After and a sentence;
- a request that needs more than the whole budget gets a 413 at once: waiting cannot help;
- the reservation is given back when the answer has been sent (a download's body and a
  stack's streamed lines count until then), or when the request fails.

The budget is per process (each gunicorn worker holds the models and its own budget), like the
rate limiter's buckets. MEMORY_BUDGET_MB=0 switches admission off.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from flask import Flask, Response, current_app, g, request

from devolearn_web.errors import ServerBusy, TooLarge

EXTENSION_KEY = "devolearn_memory_budget"
MB = 1_000_000


class Reservation:
    """Memory held for one request; `grow` asks for more, `release` gives it all back."""

    def __init__(self, budget: MemoryBudget, what: str) -> None:
        self._budget = budget
        self.what = what
        self.bytes = 0

    def grow(self, total_bytes: int) -> None:
        """Hold `total_bytes` in all (no change when it holds that much already)."""
        if total_bytes > self.bytes:
            self._budget._acquire(self, total_bytes - self.bytes)

    def shrink_to(self, total_bytes: int) -> None:
        """Hold only `total_bytes` from now on (no change when it holds less)."""
        self._budget._give_back(self, max(0, self.bytes - max(0, total_bytes)))

    def release(self) -> None:
        """Give everything back (idempotent)."""
        self._budget._give_back(self, self.bytes)


class MemoryBudget:
    """Bytes shared by the requests in flight in one process; thread-safe, first come first
    served (a large request waiting is not overtaken by small ones that keep arriving)."""

    def __init__(
        self,
        capacity_bytes: int,
        wait_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = int(capacity_bytes)
        self.wait_seconds = float(wait_seconds)
        self.in_use = 0
        self.peak_in_use = 0
        self._clock = clock
        self._changed = threading.Condition()
        self._queue: deque[object] = deque()

    def reserve(self, nbytes: int, what: str) -> Reservation:
        """A reservation of `nbytes` for `what` (a phrase: "this 36-megapixel image")."""
        reservation = Reservation(self, what)
        reservation.grow(nbytes)
        return reservation

    def try_reserve(self, nbytes: int, what: str) -> Reservation | None:
        """A reservation of `nbytes` when they are free now and nobody waits, else None (for
        memory that is only worth holding when spare: the result cache's)."""
        with self._changed:
            if self._queue or self.in_use + nbytes > self.capacity:
                return None
            reservation = Reservation(self, what)
            self.in_use += nbytes
            self.peak_in_use = max(self.peak_in_use, self.in_use)
            reservation.bytes = nbytes
            return reservation

    @property
    def retry_after_seconds(self) -> int:
        return max(1, math.ceil(self.wait_seconds))

    def _acquire(self, reservation: Reservation, extra: int) -> None:
        if reservation.bytes + extra > self.capacity:
            reservation.release()
            raise TooLarge(_too_large_sentence(reservation.what, reservation.bytes + extra, self))
        ticket = object()
        deadline = self._clock() + self.wait_seconds
        with self._changed:
            self._queue.append(ticket)
            try:
                while self._queue[0] is not ticket or self.in_use + extra > self.capacity:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    self._changed.wait(remaining)
                else:
                    self.in_use += extra
                    self.peak_in_use = max(self.peak_in_use, self.in_use)
                    reservation.bytes += extra
                    return
            finally:
                self._queue.remove(ticket)
                self._changed.notify_all()
        reservation.release()
        raise ServerBusy(
            f"The server is busy with other large images and has no memory to spare for "
            f"{reservation.what} right now (it needs about {_mb(reservation.bytes + extra)} "
            f"MB). Please try again in {self.retry_after_seconds} seconds.",
            headers={"Retry-After": str(self.retry_after_seconds)},
        )

    def _give_back(self, reservation: Reservation, nbytes: int) -> None:
        with self._changed:
            nbytes = min(nbytes, reservation.bytes)
            self.in_use -= nbytes
            reservation.bytes -= nbytes
            self._changed.notify_all()


def _too_large_sentence(what: str, nbytes: int, budget: MemoryBudget) -> str:
    return (
        f"Analysing {what} would need about {_mb(nbytes)} MB of memory, more than the "
        f"{_mb(budget.capacity)} MB this server has for analyses at a time. Send a smaller image "
        "(fewer pixels, one channel), ask for format=csv instead of an image file, or run "
        "`flask devolearn predict` (no such limit) on your own computer."
    )


def _mb(nbytes: int) -> int:
    return max(1, round(nbytes / MB))


def get_budget() -> MemoryBudget | None:
    """The current app's budget; None when admission is off (MEMORY_BUDGET_MB=0)."""
    return current_app.extensions.get(EXTENSION_KEY)


def admit(nbytes: int, what: str) -> None:
    """Hold `nbytes` in all for this request (waiting, or ServerBusy / TooLarge), until its
    answer has been sent."""
    budget = get_budget()
    if budget is None:
        return
    reservation = g.get("memory_reservation")
    if reservation is None:
        reservation = g.memory_reservation = Reservation(budget, what)
    reservation.what = what
    reservation.grow(nbytes)


def admit_request_body() -> None:
    """before_request: hold a model run's request body (twice: werkzeug's buffer and the
    bytes read from it) before it is read."""
    if (
        request.method == "POST"
        and request.content_length
        and request.path.startswith("/api/v1/predict/")
    ):
        admit(2 * request.content_length, "this upload")


def release_after_sending(response: Response) -> Response:
    """after_request: what the run held is given back as its answer goes: a finished answer
    keeps only its body until it has been sent; a streamed one (a stack's NDJSON lines) keeps
    everything until its last line."""
    reservation = g.pop("memory_reservation", None)
    if reservation is None:
        return response
    if response.is_streamed:
        response.response = _releasing_when_done(response.response, reservation)
    else:
        reservation.shrink_to(response.calculate_content_length() or 0)
    response.call_on_close(reservation.release)
    return response


def _releasing_when_done(chunks: Iterable, reservation: Reservation) -> Iterator:
    try:
        yield from chunks
    finally:  # the last chunk was sent, or the client went away (GeneratorExit)
        # The server closes this generator, not what it wraps: a file sent from disk
        # (send_file) stays open unless its own close is called here, as WSGI asks.
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
        reservation.release()


def release_on_teardown(error: BaseException | None) -> None:
    """teardown_request: a request whose answer never went through after_request."""
    reservation = g.pop("memory_reservation", None)
    if reservation is not None:
        reservation.release()


def init_app(app: Flask) -> None:
    """A budget of MEMORY_BUDGET_MB for this process (none when 0), and its request hooks."""
    capacity = float(app.config["MEMORY_BUDGET_MB"]) * MB
    if capacity <= 0:
        return
    app.extensions[EXTENSION_KEY] = MemoryBudget(
        capacity, float(app.config.get("MEMORY_WAIT_SECONDS", 10.0))
    )
    app.before_request(admit_request_body)
    app.after_request(release_after_sending)
    app.teardown_request(release_on_teardown)
