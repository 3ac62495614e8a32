"""Follow what etcd's ``Maintenance.Status`` says: whether etcd answers at all, and
whether its NOSPACE alarm is raised.

etcd raises NOSPACE when its database reaches ``--quota-backend-bytes``; from then on
every Put, Txn with a write and LeaseGrant fails with "database space exceeded" until
an operator compacts, defragments and disarms (``mobkit etcd recover``). This watch
makes one Status call (no credentials needed; any member reports the alarms of the
whole cluster) every ``interval`` seconds, and at once after :meth:`kick` (a call just
failed, perhaps for lack of space or because etcd went away; ``mobkit up`` saw its
etcd die or come back), and reports each change to its callbacks. The call does not
wait for a member to become connectable, so a dead etcd is noticed at once and a hung
one after the client's deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from mobkit.etcd.background import Background
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdError, EtcdUnavailable, unreachable

log = logging.getLogger("mobkit.etcd.status")

NOSPACE = "alarm:NOSPACE"


def nospace_alarms(errors: list[str]) -> list[str]:
    """The NOSPACE entries of ``StatusResponse.errors`` (``memberID:… alarm:NOSPACE``)."""
    return [e.strip() for e in errors if NOSPACE in e]


def _ignore(*_: object) -> None:
    return None


class EtcdStatusWatch(Background):
    task_name = "etcd-status-watch"

    def __init__(
        self,
        client: EtcdClient,
        interval: float,
        *,
        on_full: Callable[[str], None],
        on_recovered: Callable[[], None],
        on_unreachable: Callable[[str], None] = _ignore,
        on_reachable: Callable[[], None] = _ignore,
    ) -> None:
        self._client = client
        self.interval = interval
        self._on_full = on_full
        self._on_recovered = on_recovered
        self._on_unreachable = on_unreachable
        self._on_reachable = on_reachable
        self.full = False
        self.reachable = True
        self._kick = asyncio.Event()

    def kick(self) -> None:
        """Check now (a call just failed, or etcd was seen to die or come back)."""
        self._kick.set()

    async def check(self) -> None:
        """Ask etcd and report what changed. A call that goes unanswered is made once
        more: round robin sends it to another member, so one hung member of a cluster
        does not make the whole of etcd look unreachable."""
        status = None
        for _ in range(2):
            try:
                status = await self._client.status(wait_for_ready=False)
                break
            except EtcdUnavailable as exc:
                failure = exc
            except EtcdError as exc:  # answered, with an error: reachable, state unknown
                log.debug("etcd status check failed: %s", exc)
                return
        if status is None:
            if self.reachable:
                self.reachable = False
                self._on_unreachable(unreachable(self._client.endpoints, failure))
            return
        if not self.reachable:
            self.reachable = True
            self._on_reachable()
        alarms = nospace_alarms(list(status.errors))
        if alarms and not self.full:
            self.full = True
            self._on_full(f"etcd NOSPACE alarm raised ({'; '.join(alarms)})")
        elif not alarms and self.full:
            self.full = False
            self._on_recovered()

    async def run(self) -> None:
        while True:
            self._kick.clear()  # before the check: a kick during it asks for another
            await self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.interval)
