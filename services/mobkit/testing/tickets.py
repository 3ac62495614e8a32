"""What turn tickets leave in etcd, counted (the ticket soak and its benchmark)."""

from __future__ import annotations

from mobkit.core.keyspace import RECEIPTS, Keyspace
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.ops import prefix_end


async def ticket_keys(client: EtcdClient, keys: Keyspace) -> tuple[int, int, int]:
    """(ticket records, open markers, receipts) under ``keys``' prefix now."""
    counts = []
    for prefix in (keys.tickets, keys.tickets_open, keys.continuity + RECEIPTS):
        reply = await client.range(prefix, prefix_end(prefix), count_only=True, timeout=30)
        counts.append(reply.count)
    return counts[0], counts[1], counts[2]
