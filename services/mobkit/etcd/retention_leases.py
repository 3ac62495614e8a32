"""etcd leases per time bucket, so that etcd itself deletes keys past their retention.

One lease covers every key whose retention ends within one bucket (``retention /
buckets`` wide) and is granted to outlive the last of them: a key lives between its
retention and its retention plus one bucket width. One grant per bucket per process
keeps the number of etcd leases bounded by ``buckets`` (plus one) per process.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from mobkit.etcd.client import EtcdClient

DEFAULT_BUCKETS = 24


class RetentionLeases:
    def __init__(
        self,
        client: EtcdClient,
        retention_seconds: Callable[[], float],
        *,
        buckets: int = DEFAULT_BUCKETS,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        """``retention_seconds`` is read at each grant: its owner may change it."""
        self._client = client
        self._retention = retention_seconds
        self._buckets = buckets
        self._clock_ms = clock_ms
        self._leases: dict[int, int] = {}
        self._lock = asyncio.Lock()

    async def for_key_written_now(self) -> int:
        """The lease for a key whose retention starts now."""
        return await self.until(self._clock_ms() + int(self._retention() * 1000))

    async def until(self, deadline_ms: int) -> int:
        """The lease of the bucket ``deadline_ms`` falls in, granted to outlive it."""
        width = max(1000, int(self._retention() * 1000) // self._buckets)
        bucket = deadline_ms // width
        lease = self._leases.get(bucket)
        if lease is not None:
            return lease
        async with self._lock:
            lease = self._leases.get(bucket)
            if lease is None:
                ttl = math.ceil(((bucket + 1) * width - self._clock_ms()) / 1000) + 1
                lease, _ = await self._client.grant_lease(max(ttl, 2))
                self._leases[bucket] = lease
                for old in [b for b in self._leases if b < bucket - self._buckets]:
                    del self._leases[old]
        return lease

    def forget(self) -> None:
        """After etcd answered that a lease is gone (it expired early): grant anew."""
        self._leases.clear()
