"""Reading ``/metrics`` over loopback HTTP, as Prometheus does."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families


async def scrape(port: int, path: str = "/metrics") -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    await writer.wait_closed()
    head, _, body = data.decode().partition("\r\n\r\n")
    return head.splitlines()[0], body


def sample(body: str, name: str, **labels: str) -> float:
    """A sample's value; 0 when it was never exported (a counter nobody bumped yet)."""
    try:
        return value(body, name, **labels)
    except AssertionError:
        return 0.0


def value(body: str, name: str, **labels: str) -> float:
    """A sample that must be exported (``sample`` reads a missing one as 0)."""
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise AssertionError(f"no sample {name}{labels} in /metrics")
