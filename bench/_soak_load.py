"""The soak's load and its sampling: signed webhooks and API reads at steady rates, alternating
between the API processes, the enrolments in batches, and every process's RSS every ~10 s.

The load is open-loop: each request leaves at its time whatever the ones before it are doing
(a task each), so a server that stalls meets the requests piling up, as X's deliveries would,
and its answer times show the stall instead of hiding it by sending less.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import psutil

from api.app import BASE_PATH
from bench._soak_http import RawPool
from bench._soak_world import Bodies, Merchant, Setup, Signed, read_paths
from services.ingestion.signatures import SIGNATURE_HEADER

WEBHOOK_PATH = BASE_PATH + "/webhooks/twitter"
REQUEST_TIMEOUT = 30.0
SAMPLE_SECONDS = 10.0
ENROLL_EVERY = 10.0  # seconds between two enrolment calls


@dataclass(frozen=True)
class Answer:
    kind: str  # webhook, read or write (campaign start, enrolments)
    at: float  # seconds from the load's start to when it was sent
    ms: float
    status: int  # 0: no answer (timeout, refused connection)
    path: str


@dataclass(frozen=True)
class Rates:
    webhooks: float  # events per second, all kinds together
    follows: int  # over the whole load (the flow's trigger)
    customer_dms: float  # per second, answered by the assistant
    reads: float  # per second
    seconds: float  # how long the load lasts

    @property
    def follow_rate(self) -> float:
        return self.follows / self.seconds

    @property
    def quiet_rate(self) -> float:
        return max(0.0, self.webhooks - self.follow_rate - self.customer_dms)


@dataclass
class Samples:
    """RSS (MiB) by process name: (seconds from the load's start, MiB)."""

    pids: dict[str, int]
    # The workers' Prometheus ports: their workflow cache's size is sampled with their RSS
    # (a worker's RSS grows with its cache until the cache is full: growth, not a leak).
    metrics_ports: dict[str, int] = field(default_factory=dict)
    rss: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    cached: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    gone: dict[str, float] = field(default_factory=dict)  # name -> when it was found gone

    def take(self, at: float) -> None:
        for name, port in self.metrics_ports.items():
            with contextlib.suppress(httpx.HTTPError, ValueError):
                page = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                for line in page.splitlines():
                    if line.startswith("temporal_sticky_cache_size"):
                        self.cached.setdefault(name, []).append((at, float(line.split()[-1])))
        for name, pid in self.pids.items():
            if name in self.gone:
                continue
            try:
                mib = psutil.Process(pid).memory_info().rss / 2**20
            except psutil.Error:
                self.gone[name] = at
                continue
            self.rss.setdefault(name, []).append((at, mib))


class Load:
    """The load, and what each request's answer says the service owes: the flow contacts whose
    follow or enrolment was accepted (`flow_must`, each owed one run and one DM) or whose
    request got no answer (`flow_maybe`: done or not, at most once), the same for the DMs the
    assistant answers (`customer_ok`, `customer_unknown`)."""

    def __init__(self, api_urls: list[str], merchant: Merchant, setup: Setup, rates: Rates) -> None:
        self.api_urls = api_urls
        self.merchant = merchant
        self.setup = setup
        self.rates = rates
        self.bodies = Bodies(merchant)
        self.answers: list[Answer] = []
        self.flow_must: set[str] = set()
        self.flow_maybe: set[str] = set()
        self.customer_ok = 0
        self.customer_unknown = 0
        self.lag_ms = 0.0  # the worst lateness of a send against its time (the generator's own)
        self._pools: list[RawPool] = []
        self._started = 0.0
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, samples: Samples) -> None:
        headers = {"Authorization": f"Bearer {self.merchant.token}"}
        self._pools = [RawPool(url, headers, REQUEST_TIMEOUT) for url in self.api_urls]
        try:
            self._started = time.perf_counter()
            samples.take(0.0)
            start = f"{BASE_PATH}/campaigns/{self.setup.campaign_id}/start"
            self._spawn(self._call(0, "write", "POST", start))
            await asyncio.gather(
                self._paced(self.rates.webhooks, self._webhook),
                self._paced(self.rates.reads, self._read),
                self._enrolments(),
                self._sampling(samples),
            )
            samples.take(self.elapsed())
            while self._tasks:  # the last requests' answers
                await asyncio.gather(*list(self._tasks))
        finally:
            for pool in self._pools:
                await pool.close()

    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    def _spawn(self, coroutine: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _paced(self, rate: float, fire: Callable[[int], Awaitable[None]]) -> None:
        """`fire(i)` at i / rate seconds from the start, for the load's duration."""
        for i in range(int(rate * self.rates.seconds)):
            delay = i / rate - self.elapsed()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                self.lag_ms = max(self.lag_ms, -1000 * delay)
            self._spawn(fire(i))

    async def _sampling(self, samples: Samples) -> None:
        ticks = int(self.rates.seconds // SAMPLE_SECONDS)
        for k in range(1, ticks + 1):
            await asyncio.sleep(max(0.0, k * SAMPLE_SECONDS - self.elapsed()))
            if k * SAMPLE_SECONDS < self.rates.seconds:
                samples.take(self.elapsed())

    # The requests ---------------------------------------------------------------------------

    async def _call(
        self,
        i: int,
        kind: str,
        method: str,
        path: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        """One request to the i-th API process in turn; (status, body), status 0 when no
        answer came (timeout, refused or dropped connection)."""
        pool = self._pools[i % len(self._pools)]
        at = self.elapsed()
        status, answer = 0, b""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
            status, answer = await pool.request(method, path, body, headers)
        self.answers.append(Answer(kind, at, 1000 * (self.elapsed() - at), status, path))
        return status, answer

    def _next_body(self) -> Signed:
        """The kind that is most behind its share of the rate so far (a smooth interleaving:
        follows, the assistant's DMs and the quiet DMs each keep their own steady rate)."""
        t = max(self.elapsed(), 1e-3)
        due = {
            "follow": self.rates.follow_rate * t - self.bodies.follows,
            "customer": self.rates.customer_dms * t - self.bodies.customer_dms,
            "quiet": self.rates.quiet_rate * t - self.bodies.quiet_dms,
        }
        if self.bodies.follows >= self.rates.follows:
            due.pop("follow")
        kind = max(due, key=lambda k: due[k])
        if kind == "follow":
            return self.bodies.follow()
        if kind == "customer":
            return self.bodies.customer_dm()
        return self.bodies.quiet_dm()

    async def _webhook(self, i: int) -> None:
        body, signature, ref = self._next_body()
        headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature}
        status, _ = await self._call(i, "webhook", "POST", WEBHOOK_PATH, body, headers)
        if ref.startswith("follow:"):
            (self.flow_must if status == 200 else self.flow_maybe).add(ref[7:])
        elif ref == "customer":
            self.customer_ok += status == 200
            self.customer_unknown += status == 0

    async def _read(self, i: int) -> None:
        paths = read_paths(self.setup)
        await self._call(i, "read", "GET", BASE_PATH + paths[i % len(paths)])

    async def _enrolments(self) -> None:
        """The seeded contacts enrolled in equal batches every ENROLL_EVERY seconds, the last
        one well before the end (each run then waits and sends)."""
        contacts = self.merchant.enrolled
        if not contacts:
            return
        calls = max(1, int((self.rates.seconds - 2 * ENROLL_EVERY) // ENROLL_EVERY))
        size = math.ceil(len(contacts) / calls)
        for k, first in enumerate(range(0, len(contacts), size)):
            await asyncio.sleep(max(0.0, ENROLL_EVERY / 2 + k * ENROLL_EVERY - self.elapsed()))
            self._spawn(self._enrol(k, contacts[first : first + size]))

    async def _enrol(self, k: int, batch: list[tuple[str, str]]) -> None:
        path = f"{BASE_PATH}/automation/flows/{self.setup.flow_id}/enroll"
        body = json.dumps({"contactIds": [contact for contact, _ in batch]}).encode()
        headers = {"Content-Type": "application/json"}
        status, answer = await self._call(k, "write", "POST", path, body, headers)
        if status == 200:
            skipped = {s["contactId"] for s in json.loads(answer)["data"]["skipped"]}
            self.flow_must.update(x for contact, x in batch if contact not in skipped)
        elif status == 0:
            self.flow_maybe.update(x for _, x in batch)
