"""Process-wide resources shared by the services hosted in one process."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from mobkit.core.errors import InvalidArgument
from mobkit.server.conditions import BackendConditions
from mobkit.server.config import Settings

if TYPE_CHECKING:
    from mobkit.etcd.client import EtcdClient
    from mobkit.etcd.status_watch import EtcdStatusWatch


class Resources:
    """Lazily opened shared clients (one etcd connection per process), and the
    in-process provider instances, so ``serve all`` composes without gRPC hops."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._etcd: EtcdClient | None = None
        self._lock = asyncio.Lock()
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.providers: dict[str, Any] = {}
        #: Backend conditions (etcd out of space or unreachable, ...) seen by this process.
        self.conditions = BackendConditions()
        self._etcd_watch: EtcdStatusWatch | None = None

    async def etcd(self) -> EtcdClient:
        async with self._lock:
            if self._etcd is None:
                if not self.settings.etcd_endpoints:
                    raise InvalidArgument("etcd_endpoints", "no etcd endpoints configured")
                from mobkit.etcd.client import EtcdClient, EtcdTLS

                s = self.settings
                tls = (
                    EtcdTLS(ca_file=s.etcd_ca, cert_file=s.etcd_cert, key_file=s.etcd_key)
                    if s.etcd_ca or s.etcd_cert
                    else None
                )
                self._etcd = await EtcdClient.connect(
                    s.etcd_endpoints, tls=tls, username=s.etcd_username, password=s.etcd_password
                )
            return self._etcd

    def watch_etcd(self) -> None:
        """Follow etcd's reachability and NOSPACE alarm into :attr:`conditions`, if this
        process uses etcd (``etcd_alarm_interval`` > 0); stops with :meth:`close`."""
        interval = self.settings.etcd_alarm_interval
        if self._etcd is None or self._etcd_watch is not None or interval <= 0:
            return
        from mobkit.etcd.status_watch import EtcdStatusWatch
        from mobkit.observability import metrics

        metrics.BACKEND_FULL.labels("etcd").set(0)
        conditions = self.conditions
        watch = self._etcd_watch = EtcdStatusWatch(
            self._etcd,
            interval,
            on_full=lambda detail: conditions.report_full("etcd", detail),
            on_recovered=lambda: conditions.report_recovered("etcd"),
            on_unreachable=lambda detail: conditions.report_unavailable("etcd", detail),
            on_reachable=lambda: conditions.report_available("etcd"),
        )
        watch.start()
        self.on_close(watch.stop)

    def check_backends_now(self) -> None:
        """A call failed for lack of space or as unavailable, perhaps, or etcd was seen
        to die or come back: ask etcd now."""
        if self._etcd_watch is not None:
            self._etcd_watch.kick()

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    async def close(self) -> None:
        for closer in reversed(self._closers):
            await closer()
        self._closers.clear()
        if self._etcd is not None:
            await self._etcd.close()
            self._etcd = None
