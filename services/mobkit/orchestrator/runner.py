"""The orchestrator's background loops: renew leases, follow the roster, reconcile.

Kept apart from ``Orchestrator`` so the domain core is driven step by step in
tests, while a served replica runs these loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from mobkit.core.errors import MobKitError
from mobkit.core.types import RosterContext
from mobkit.orchestrator.orchestrator import CLAIM_BATCH, Orchestrator

log = logging.getLogger("mobkit.orchestrator")
VACANCY_SETTLE = 0.05


class OrchestratorRunner:
    def __init__(
        self,
        orchestrator: Orchestrator,
        *,
        reconcile_interval: float = 30.0,
        renew_fraction: float = 1 / 3,
    ) -> None:
        self.o = orchestrator
        self.reconcile_interval = reconcile_interval
        self.renew_interval = max(0.05, orchestrator.lease_ttl.total_seconds() * renew_fraction)
        self._tasks: list[asyncio.Task[None]] = []
        self._kick = asyncio.Event()
        self._claim_now = asyncio.Event()

    async def start(self) -> None:
        await self.o.refresh_durability()
        try:
            await self.o.reconcile()
        except MobKitError as exc:
            # Start anyway: the loops retry, and status shows what is missing.
            log.error("initial reconcile failed: %s", exc)
        self._tasks = [
            asyncio.create_task(self._loop(self.o.renew_once, self.renew_interval), name="renew"),
            asyncio.create_task(self._claim_loop(), name="claim"),
            asyncio.create_task(self._reconcile_loop(), name="reconcile"),
            asyncio.create_task(self._watch_roster(), name="roster-watch"),
        ]
        if self.o.fleet is not None:
            self._tasks.append(asyncio.create_task(self._watch_vacancies(), name="vacancy-watch"))

    def kick(self) -> None:
        """Ask for a reconcile now (roster changed, a lease was released...)."""
        self._kick.set()

    async def _loop(self, step: Callable[[], Awaitable[object]], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await step()
            except MobKitError as exc:
                log.warning("%s failed: %s", getattr(step, "__name__", step), exc)
            except Exception:
                log.exception("%s crashed; continuing", getattr(step, "__name__", step))

    async def _claim_loop(self) -> None:
        """Take over vacant identities: when etcd reports a lease key or a replica gone,
        else every poll interval. A full round means more are waiting: go again at once
        (bootstrap and failover of big rosters)."""
        interval = max(0.25, self.renew_interval / 2)
        while True:
            self._claim_now.clear()
            try:
                full = len(await self.o.claim()) >= CLAIM_BATCH
            except MobKitError as exc:
                log.warning("claim failed: %s", exc)
                full = False
            except Exception:
                log.exception("claim crashed; continuing")
                full = False
            if not full:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._claim_now.wait(), interval)
                    # Keys expire or are released in bursts: one round for the burst.
                    await asyncio.sleep(VACANCY_SETTLE)

    async def _watch_vacancies(self) -> None:
        fleet = self.o.fleet
        assert fleet is not None
        while True:
            try:
                await fleet.watch_vacancies(self._claim_now.set)
            except MobKitError as exc:
                log.warning("vacancy watch interrupted: %s", exc)
            except Exception:
                log.exception("vacancy watch crashed")
            await asyncio.sleep(1.0)  # the claim loop still polls meanwhile

    async def _reconcile_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.reconcile_interval)
            self._kick.clear()
            try:
                await self.o.reconcile()
            except MobKitError as exc:
                log.warning("reconcile failed: %s", exc)
            except Exception:
                log.exception("reconcile crashed; continuing")

    async def _watch_roster(self) -> None:
        backoff = 0.2
        while True:
            try:
                first = True
                async for _ in self.o.p.roster.watch_roster(RosterContext()):
                    backoff = 0.2
                    if first:
                        first = False  # the current roster: already reconciled
                        continue
                    self.kick()
            except MobKitError as exc:
                log.warning("roster watch interrupted: %s", exc)
            except Exception:
                log.exception("roster watch crashed")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def stop(self, *, release: bool = True) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self.o.shutdown(release=release)
