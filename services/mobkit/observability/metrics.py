"""Prometheus metrics of one MobKit process, and the ``/metrics`` endpoint serving them.

RPC metrics use the names of the common gRPC exporters
(``grpc_server_handled_total{grpc_service,grpc_method,grpc_code}``,
``grpc_server_handling_seconds``), so existing dashboards work; they are fed by
the server interceptor through :func:`observe_rpc`. Counters are bumped where
their event happens (``CHECKPOINT_SAVES.labels(result="ok").inc()`` after each
turn's checkpoint); the census gauges (``mobkit_leases_held``,
``mobkit_identities_by_state``) are read at scrape time from the orchestrators
that :func:`track_census` registered, so they are exactly what those hold and
cannot drift from it however many code paths change a state or a lease.

Everything lives in this module's own registry (with the process collectors), so
importing it twice or hosting several servers in one process never clashes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from mobkit.server.config import split_hostport

log = logging.getLogger("mobkit.metrics")
T = TypeVar("T")

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

RPCS_HANDLED = Counter(
    "grpc_server_handled",
    "RPCs completed on the server, by method and gRPC status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
    registry=REGISTRY,
)
RPC_LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its status (streams: their whole life).",
    ["grpc_service", "grpc_method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
CHECKPOINT_SAVES = Counter(
    "mobkit_checkpoint_saves",
    "Checkpoints of turns (session snapshot saves), by result: ok, stale (another "
    "owner's token), full (BACKEND_FULL), error.",
    ["result"],
    registry=REGISTRY,
)
LLM_REQUESTS = Counter(
    "mobkit_llm_requests",
    "Chat Completions requests of llm agents, by model and result: ok, unavailable "
    "(timeouts, 429 and 5xx left after the retries), failed (refused).",
    ["model", "result"],
    registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "mobkit_llm_tokens",
    "Tokens of llm agents' model requests as their endpoints counted them, by model and "
    "kind: prompt, completion.",
    ["model", "kind"],
    registry=REGISTRY,
)

BACKEND_FULL = Gauge(
    "mobkit_backend_full",
    "1 while a backend refuses writes for lack of space (etcd NOSPACE alarm, SQLITE_FULL).",
    ["backend"],
    registry=REGISTRY,
)

LIFECYCLE_STATES = ("uninitialized", "dormant", "active", "suspended", "retiring", "broken")


def observe_rpc(method: str, code: str, elapsed: float) -> None:
    """Observer for ``ServiceCallInterceptor``: ``/pkg.Service/Method``, status name, seconds."""
    service, _, name = method.lstrip("/").rpartition("/")
    RPCS_HANDLED.labels(service, name, code).inc()
    RPC_LATENCY.labels(service, name).observe(elapsed)


@dataclass(frozen=True, slots=True)
class Census:
    """What one orchestrator holds now: identities by lifecycle state, leases held."""

    states: Mapping[str, int]
    leases_held: int


class _Sources(Generic[T]):
    """Live objects a collector reads at scrape time; ``track`` returns the untrack."""

    def __init__(self) -> None:
        self._sources: list[Callable[[], T]] = []

    def track(self, source: Callable[[], T]) -> Callable[[], None]:
        self._sources.append(source)
        return lambda: self._untrack(source)

    def _untrack(self, source: Callable[[], T]) -> None:
        with contextlib.suppress(ValueError):
            self._sources.remove(source)

    def read(self) -> Iterator[T]:
        for source in list(self._sources):
            with contextlib.suppress(Exception):  # a scrape never fails on a closing source
                yield source()


class _Census(_Sources[Census], Collector):
    """``mobkit_leases_held`` and ``mobkit_identities_by_state``, summed over the
    orchestrators of this process (one, but tests host several)."""

    def collect(self) -> Iterator[Metric]:
        states: dict[str, int] = dict.fromkeys(LIFECYCLE_STATES, 0)
        leases = 0
        for census in self.read():
            leases += census.leases_held
            for state, n in census.states.items():
                states[state] = states.get(state, 0) + n
        yield GaugeMetricFamily(
            "mobkit_leases_held", "Identity leases this process holds now.", value=leases
        )
        by_state = GaugeMetricFamily(
            "mobkit_identities_by_state",
            "Identities of the roster by lifecycle state, as this replica sees them: those "
            "it hosts in their own state, the others dormant unless it found them broken or "
            "suspended (in a fleet, sum the active ones).",
            labels=["state"],
        )
        for state, n in sorted(states.items()):
            by_state.add_metric([state], n)
        yield by_state

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("mobkit_leases_held", "Identity leases held.")
        yield GaugeMetricFamily("mobkit_identities_by_state", "Identities by state.")


_CENSUS = _Census()
REGISTRY.register(_CENSUS)


def track_census(source: Callable[[], Census]) -> Callable[[], None]:
    """Read ``source()`` (an orchestrator's census) at every scrape; returns the untrack."""
    return _CENSUS.track(source)


class _EtcdRoundTrips(_Sources[int], Collector):
    """``mobkit_etcd_round_trips_total``, read at scrape time from the live etcd clients."""

    def collect(self) -> Iterator[Metric]:
        total = sum(int(n) for n in self.read())
        yield CounterMetricFamily(
            "mobkit_etcd_round_trips", "Unary etcd RPCs issued by this process.", value=total
        )

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily("mobkit_etcd_round_trips", "Unary etcd RPCs issued.")


_ETCD = _EtcdRoundTrips()
REGISTRY.register(_ETCD)


def track_etcd_round_trips(source: Callable[[], int]) -> Callable[[], None]:
    """Count ``source()`` (e.g. ``lambda: client.round_trips``) in the etcd counter.

    Returns the function that stops tracking it. Counts from a client that is
    closed and untracked leave the total, which Prometheus' ``rate`` tolerates
    as a counter reset.
    """
    return _ETCD.track(source)


def render(registry: CollectorRegistry = REGISTRY) -> bytes:
    return generate_latest(registry)


# -- /metrics over HTTP --------------------------------------------------------------

_MAX_HEADER = 16 * 1024


class MetricsServer:
    """A minimal asyncio HTTP/1.0 server answering ``GET /metrics`` (no threads)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, listen: str) -> MetricsServer:
        host, port = split_hostport(listen)
        self._server = await asyncio.start_server(self._handle, host, port, limit=_MAX_HEADER)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("metrics on http://%s:%d/metrics", host, self.port)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                head = await reader.readuntil(b"\r\n\r\n")
                status, body, ctype = self._answer(head)
                writer.write(
                    f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    def _answer(self, head: bytes) -> tuple[str, bytes, str]:
        method, _, rest = head.split(b"\r\n", 1)[0].decode("latin-1").partition(" ")
        path = rest.split(" ", 1)[0].split("?", 1)[0]
        if method != "GET":
            return "405 Method Not Allowed", b"GET only\n", "text/plain"
        if path not in ("/metrics", "/"):
            return "404 Not Found", b"try /metrics\n", "text/plain"
        return "200 OK", generate_latest(self._registry), CONTENT_TYPE_LATEST


async def start_metrics_server(
    listen: str, registry: CollectorRegistry = REGISTRY
) -> MetricsServer:
    """Serve ``registry`` on ``listen`` (``HOST:PORT``, port 0 picks one: see ``.port``)."""
    return await MetricsServer(registry).start(listen)
