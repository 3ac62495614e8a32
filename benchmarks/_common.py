"""Shared benchmark helpers: latency sampling, percentiles, child processes."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latencies(
    call: Callable[[int], Awaitable[object]], n: int, warmup: int = 50
) -> list[float]:
    for i in range(warmup):
        await call(i)
    out = []
    for i in range(n):
        t = time.perf_counter()
        await call(warmup + i)
        out.append(time.perf_counter() - t)
    return out


async def side_by_side(
    calls: list[Callable[[int], Awaitable[object]]], n: int, warmup: int = 50
) -> list[list[float]]:
    """Latencies of each call, taken in turn (one of each, ``n`` times, the order
    reversed every other round), so that every list sees the same load: on a shared
    machine a baseline timed minutes apart from its subject moves the ratio either way."""
    for i in range(warmup):
        for call in calls:
            await call(i)
    out: list[list[float]] = [[] for _ in calls]
    for i in range(n):
        order = list(zip(calls, out, strict=True))
        for call, samples in order if i % 2 else order[::-1]:
            t = time.perf_counter()
            await call(warmup + i)
            samples.append(time.perf_counter() - t)
    return out


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f} ms"


def summary(samples: list[float]) -> str:
    return f"p50 {fmt_ms(pct(samples, 0.5))}  p99 {fmt_ms(pct(samples, 0.99))}  mean {fmt_ms(statistics.fmean(samples))}"


def child_server(script: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``benchmarks/<script>``, a server that names where it listens as the last
    word of its first line on stderr: (the process, that word)."""
    path = Path(__file__).with_name(script)
    proc = subprocess.Popen([sys.executable, str(path)], stderr=subprocess.PIPE)
    assert proc.stderr is not None
    return proc, proc.stderr.readline().decode().strip().rsplit(" ", 1)[-1]


class EchoServer:
    """The bare gRPC round-trip baseline, in its own process like the services."""

    def __enter__(self) -> EchoServer:
        self.proc, self.address = child_server("_echo_server.py")
        return self

    def call(self, channel: grpc.aio.Channel) -> Callable[[int], Awaitable[object]]:
        rpc = channel.unary_unary("/bench.Echo/Echo")
        payload = b"x" * 64

        async def one(_: int) -> object:
            return await rpc(payload, timeout=10)

        return one

    def call_stream(self, channel: grpc.aio.Channel) -> Callable[[int], Awaitable[object]]:
        """One message each way on a bidirectional call."""
        rpc = channel.stream_stream("/bench.Echo/EchoStream")
        payload = b"x" * 64

        async def one(_: int) -> object:
            call = rpc(timeout=10)
            await call.write(payload)
            return await call.read()

        return one

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait(5)


class ModelProcess:
    """A loopback OpenAI-compatible model in its own process (``_model_server.py``)."""

    def __enter__(self) -> ModelProcess:
        self.proc, self.base_url = child_server("_model_server.py")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait(5)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
