"""A bounded load through the edge, recording every request's outcome, for tests that change
something while traffic flows (reloads, key changes, certificate swaps, a killed container).

    with BoundedLoad(lambda: edge.https_client(ca), edge.https_url(""), api_key=key) as load:
        load.wait_for_requests(20)      # traffic is flowing
        ...change something...
        load.wait_for_requests(20)      # and keeps flowing after it
    assert load.failures() == []
    assert edge_lines_with(load.user_agent) == load.answered

Client i loops over `plans[i % len(plans)]`; by default client 0 scores a real text again and
again (a request waiting for an inference job is nearly always in flight) and client 1 calls
/healthz as fast as answers come (many short requests, so many chances to lose one). Every loop is
bounded by `max_requests` (all clients together) and `max_seconds`; leaving the `with` block
stops the clients and waits for the requests in flight. All requests carry one unique
User-Agent, so the test can count exactly this load's lines in the dedicated log.

An outcome is "ok" when the status is the expected one (200 by default); anything else,
including a connection error or a timeout, is kept with its text.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Sequence

import requests

from .procs import wait_until
from .service import SAMPLE_TEXT


@dataclass(frozen=True)
class Step:
    method: str
    path: str
    json: dict | None = None
    pause: float = 0.0      # seconds to wait before sending (a paced client)


DEFAULT_PLANS = ((Step("POST", "/score", {"text": SAMPLE_TEXT}),), (Step("GET", "/healthz"),))


@dataclass(frozen=True)
class Outcome:
    client: int
    step: Step
    started: float          # time.monotonic()
    finished: float
    status: int | None      # None: no HTTP answer
    detail: str             # "ok", or what went wrong

    @property
    def ok(self) -> bool:
        return self.detail == "ok"

    @property
    def seconds(self) -> float:
        return self.finished - self.started


class BoundedLoad:
    def __init__(self, session_factory: Callable[[], requests.Session], base_url: str, *,
                 api_key: str | Callable[[], str], clients: int = 2,
                 plans: Sequence[Sequence[Step]] = DEFAULT_PLANS, max_requests: int = 3000,
                 max_seconds: float = 120.0, request_timeout: float = 60.0,
                 expected_status: int = 200, keep_alive: bool = True):
        self.session_factory = session_factory
        self.base_url = base_url.rstrip("/")
        # A callable lets a test switch keys mid-load (a rotation).
        self._key = api_key if callable(api_key) else (lambda: api_key)
        self.clients = clients
        self.plans = tuple(tuple(plan) for plan in plans)
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.request_timeout = request_timeout
        self.expected_status = expected_status
        self.keep_alive = keep_alive
        self.user_agent = f"bounded-load/{uuid.uuid4().hex[:12]}"
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started_at = 0.0
        self._issued = 0
        self._in_flight: dict[int, tuple[Step, float]] = {}

    # Lifecycle.
    def start(self) -> "BoundedLoad":
        self._started_at = time.monotonic()
        self._threads = [threading.Thread(target=self._client, args=(i,), daemon=True,
                                          name=f"load-{i}") for i in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.request_timeout + 10)

    def __enter__(self) -> "BoundedLoad":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    # The clients.
    def _budget_left(self) -> bool:
        with self._lock:
            issued = self._issued
        return (not self._stop.is_set() and issued < self.max_requests
                and time.monotonic() - self._started_at < self.max_seconds)

    def _client(self, index: int) -> None:
        session = self.session_factory()
        session.headers["User-Agent"] = self.user_agent
        if not self.keep_alive:
            session.headers["Connection"] = "close"
        plan = self.plans[index % len(self.plans)]
        round_ = 0
        while self._budget_left():
            step = plan[round_ % len(plan)]
            round_ += 1
            if step.pause and self._stop.wait(step.pause):
                break
            started = time.monotonic()
            with self._lock:
                self._issued += 1
                self._in_flight[index] = (step, started)
            status, detail = None, ""
            try:
                response = session.request(
                    step.method, self.base_url + step.path, json=step.json,
                    headers={"Authorization": f"Bearer {self._key()}"},
                    timeout=self.request_timeout)
                status = response.status_code
                detail = "ok" if status == self.expected_status else \
                    f"HTTP {status}: {response.text[:200]}"
            except requests.RequestException as error:
                detail = f"{type(error).__name__}: {error}"
            outcome = Outcome(index, step, started, time.monotonic(), status, detail)
            with self._lock:
                self.outcomes.append(outcome)
                del self._in_flight[index]

    # What happened.
    @property
    def count(self) -> int:
        with self._lock:
            return len(self.outcomes)

    @property
    def answered(self) -> int:
        """Requests that got an HTTP answer (each one is a line in the dedicated log)."""
        with self._lock:
            return sum(1 for o in self.outcomes if o.status is not None)

    def in_flight(self, path: str | None = None) -> list[tuple[Step, float]]:
        """Requests sent and not answered yet (optionally only those to `path`)."""
        with self._lock:
            return [(s, t) for s, t in self._in_flight.values() if path in (None, s.path)]

    def wait_for_in_flight(self, path: str, *, timeout: float = 60.0) -> None:
        """Wait until a request to `path` is in flight: the moment to change something."""
        wait_until(lambda: bool(self.in_flight(path)) or not self.running, timeout=timeout,
                   interval=0.01, what=f"a request to {path} in flight")
        if not self.in_flight(path) and not self.running:
            raise AssertionError(f"the load ended before a request to {path} was in flight")

    def failures(self) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if not o.ok]

    def finished_after(self, instant: float, path: str | None = None) -> list[Outcome]:
        """Requests (to `path` if given) that started after `instant` and have finished."""
        with self._lock:
            return [o for o in self.outcomes if o.started > instant and path in (None, o.step.path)]

    def spanning(self, instant: float) -> list[Outcome]:
        """Requests in flight at `instant`."""
        with self._lock:
            return [o for o in self.outcomes if o.started <= instant <= o.finished]

    def wait_for_requests(self, n: int, *, path: str | None = None, after: float | None = None,
                          timeout: float | None = None) -> None:
        """Wait until `n` requests (to `path` if given) that started after `after` (default: now)
        have finished."""
        after = time.monotonic() if after is None else after
        done = lambda: len(self.finished_after(after, path)) >= n  # noqa: E731
        wait_until(lambda: done() or not self.running, timeout=timeout or self.max_seconds,
                   what=f"{n} more requests of the load")
        if not done():
            raise AssertionError(f"the load ended (budget spent) before {n} more requests; "
                                 f"{self.count} so far, failures: {self.failures()[:3]}")

    def summary(self) -> str:
        with self._lock:
            outcomes = list(self.outcomes)
        if not outcomes:
            return "no requests"
        by_path: dict[str, list[float]] = {}
        for o in outcomes:
            by_path.setdefault(o.step.path, []).append(o.seconds)
        parts = [f"{len(outcomes)} requests, {sum(not o.ok for o in outcomes)} failed"]
        for path, seconds in sorted(by_path.items()):
            seconds.sort()
            parts.append(f"{path}: {len(seconds)} (median {seconds[len(seconds) // 2]:.3f}s, "
                         f"max {seconds[-1]:.3f}s)")
        return "; ".join(parts)


def log_lines_with(path, user_agent: str) -> int:
    """How many lines of the dedicated log at `path` carry `user_agent`."""
    try:
        with open(path, errors="replace") as log:
            return sum(1 for line in log if f'ua="{user_agent}"' in line)
    except FileNotFoundError:
        return 0
