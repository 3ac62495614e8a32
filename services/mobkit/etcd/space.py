"""Notice etcd's NOSPACE alarm, and its end.

etcd raises NOSPACE when its database reaches ``--quota-backend-bytes``; from then on
every Put, Txn with a write and LeaseGrant fails with "database space exceeded" until
an operator compacts, defragments and disarms (``mobkit etcd recover``). This watch
asks ``Maintenance.Status`` (no credentials needed; any member reports the alarms of
the whole cluster) every ``interval`` seconds, and at once after :meth:`kick` (called
when a write failed for lack of space), and reports each change to its callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from mobkit.etcd.background import Background
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdError

log = logging.getLogger("mobkit.etcd.space")

NOSPACE = "alarm:NOSPACE"


def nospace_alarms(errors: list[str]) -> list[str]:
    """The NOSPACE entries of ``StatusResponse.errors`` (``memberID:… alarm:NOSPACE``)."""
    return [e.strip() for e in errors if NOSPACE in e]


class NoSpaceWatch(Background):
    task_name = "etcd-nospace-watch"

    def __init__(
        self,
        client: EtcdClient,
        interval: float,
        *,
        on_full: Callable[[str], None],
        on_recovered: Callable[[], None],
    ) -> None:
        self._client = client
        self.interval = interval
        self._on_full = on_full
        self._on_recovered = on_recovered
        self.full = False
        self._kick = asyncio.Event()

    def kick(self) -> None:
        """Check now (a write just failed, perhaps for lack of space)."""
        self._kick.set()

    async def check(self) -> bool:
        """Ask etcd once; report a change; returns whether the alarm is raised."""
        status = await self._client.status()
        alarms = nospace_alarms(list(status.errors))
        if alarms and not self.full:
            self.full = True
            self._on_full(f"etcd NOSPACE alarm raised ({'; '.join(alarms)})")
        elif not alarms and self.full:
            self.full = False
            self._on_recovered()
        return self.full

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except EtcdError as exc:  # unreachable: not our news to report
                log.debug("etcd alarm check failed: %s", exc)
            self._kick.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.interval)
