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
    from mobkit.etcd.space import NoSpaceWatch


class Resources:
    """Lazily opened shared clients (one etcd connection per process), and the
    in-process provider instances, so ``serve all`` composes without gRPC hops."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._etcd: EtcdClient | None = None
        self._lock = asyncio.Lock()
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self.providers: dict[str, Any] = {}
        #: Backend conditions (etcd out of space, ...) seen by this process.
        self.conditions = BackendConditions()
        self._space_watch: NoSpaceWatch | None = None

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

    def watch_etcd_space(self) -> None:
        """Follow etcd's NOSPACE alarm into :attr:`conditions`, if this process uses
        etcd (``etcd_alarm_interval`` > 0); stops with :meth:`close`."""
        interval = self.settings.etcd_alarm_interval
        if self._etcd is None or self._space_watch is not None or interval <= 0:
            return
        from mobkit.etcd.space import NoSpaceWatch
        from mobkit.observability import metrics

        metrics.BACKEND_FULL.labels("etcd").set(0)
        watch = self._space_watch = NoSpaceWatch(
            self._etcd,
            interval,
            on_full=lambda detail: self.conditions.report_full("etcd", detail),
            on_recovered=lambda: self.conditions.report_recovered("etcd"),
        )
        watch.start()
        self.on_close(watch.stop)

    def check_backends_now(self) -> None:
        """A write failed for lack of space, perhaps: look at etcd's alarms now."""
        if self._space_watch is not None:
            self._space_watch.kick()

    def on_close(self, closer: Callable[[], Awaitable[None]]) -> None:
        self._closers.append(closer)

    async def close(self) -> None:
        for closer in reversed(self._closers):
            await closer()
        self._closers.clear()
        if self._etcd is not None:
            await self._etcd.close()
            self._etcd = None
