"""``build_server(config) -> (server, port)``: servicers, health, reflection, interceptor.

Shutdown order (SIGTERM/SIGINT or ``stop()``): health goes NOT_SERVING so load
balancers stop sending, then gRPC drains in-flight calls for ``grace`` seconds,
then the services' resources are closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mobkit.core.limits import MESSAGE_SIZE_OPTIONS
from mobkit.server.addresses import listen_problem
from mobkit.server.conditions import BackendCondition, BackendConditions
from mobkit.server.errors import ErrorTable
from mobkit.server.interceptor import Authorizer, ServiceCallInterceptor

log = logging.getLogger("mobkit.server")

LIVENESS = "liveness"
"""Health name that is SERVING from start to stop, whatever the backends do: for
liveness probes (the empty name goes NOT_SERVING while etcd is out of space)."""


@dataclass
class ServiceRegistration:
    """One gRPC service to host: its full name, how to add it, its error table."""

    name: str
    add_to_server: Callable[[grpc.aio.Server], None]
    errors: ErrorTable
    on_stop: Sequence[Callable[[], Awaitable[None]]] = ()
    # The backends it cannot work without ("etcd", "sqlite"): its health follows them.
    backends: frozenset[str] = frozenset()


@dataclass
class ServerConfig:
    services: Sequence[ServiceRegistration]
    listen: str = "127.0.0.1:0"
    grace: float = 5.0
    # Time between NOT_SERVING and refusing new calls, so balancers notice first.
    drain_delay: float = 0.5
    credentials: grpc.ServerCredentials | None = None
    interceptors: Sequence[grpc.aio.ServerInterceptor] = ()
    observers: list[Any] = field(default_factory=list)
    # Checks each call's credentials first (e.g. TokenRegistry.authorize); None: no auth.
    authorizer: Authorizer | None = None


class MobKitServer:
    """A started-or-startable grpc.aio server with its health servicer."""

    def __init__(
        self,
        server: grpc.aio.Server,
        health_servicer: health.aio.HealthServicer,
        config: ServerConfig,
        port: int,
    ) -> None:
        self.grpc = server
        self.health = health_servicer
        self.config = config
        self.port = port
        self._stopped = False
        self._health_tasks: set[asyncio.Task[None]] = set()
        self._health_lock = asyncio.Lock()

    @property
    def service_names(self) -> list[str]:
        return [s.name for s in self.config.services]

    async def start(self) -> None:
        await self.grpc.start()
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)

    async def _set_health(self, status: Any) -> None:
        for name in ["", *self.service_names]:
            await self.health.set(name, status)

    def follow(self, conditions: BackendConditions) -> None:
        """Each service NOT_SERVING while ``conditions`` hold for a backend it uses
        (etcd out of space or unreachable, ...), SERVING again once none does; the
        empty name NOT_SERVING while any service is. ``liveness`` stays SERVING:
        restarting the process would not free space or bring etcd back."""

        def changed(condition: BackendCondition, holds: bool) -> None:
            self._refresh(conditions)

        conditions.subscribe(changed)
        if conditions.degraded:
            self._refresh(conditions)

    def _refresh(self, conditions: BackendConditions) -> None:
        task = asyncio.get_running_loop().create_task(self._follow(conditions))
        self._health_tasks.add(task)
        task.add_done_callback(self._health_tasks.discard)

    async def _follow(self, conditions: BackendConditions) -> None:
        async with self._health_lock:  # the last change is the one that stays
            if self._stopped:
                return
            serving = health_pb2.HealthCheckResponse
            down = conditions.affected()
            degraded = [bool(s.backends & down) for s in self.config.services]
            for svc, bad in zip(self.config.services, degraded, strict=True):
                await self.health.set(svc.name, serving.NOT_SERVING if bad else serving.SERVING)
            await self.health.set("", serving.NOT_SERVING if any(degraded) else serving.SERVING)

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING first, then drain in-flight calls, then close resources."""
        if self._stopped:
            return
        self._stopped = True
        async with self._health_lock:  # after any change being applied
            await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.health.set(LIVENESS, health_pb2.HealthCheckResponse.NOT_SERVING)
        grace = self.config.grace if grace is None else grace
        if grace > 0 and self.config.drain_delay > 0:
            await asyncio.sleep(self.config.drain_delay)
        await self.grpc.stop(grace)
        # Last started, first stopped: a service stops before those it uses (the
        # orchestrator's last checkpoints and releases before the stores close).
        for svc in reversed(self.config.services):
            for close in svc.on_stop:
                try:
                    await close()
                except Exception:
                    log.exception("closing %s failed", svc.name)

    async def wait(self) -> None:
        await self.grpc.wait_for_termination()


def build_server(config: ServerConfig) -> tuple[MobKitServer, int]:
    tables = {s.name: s.errors for s in config.services}
    server = grpc.aio.server(
        interceptors=[
            ServiceCallInterceptor(
                tables, observers=config.observers, authorizer=config.authorizer
            ),
            *config.interceptors,
        ],
        options=[
            *MESSAGE_SIZE_OPTIONS,
            ("grpc.so_reuseport", 0),
        ],
    )
    for svc in config.services:
        svc.add_to_server(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*(s.name for s in config.services), health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    try:
        if config.credentials is not None:
            port = server.add_secure_port(config.listen, config.credentials)
        else:
            port = server.add_insecure_port(config.listen)
    except RuntimeError:  # gRPC's "Failed to bind": say why, in one line
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}: {listen_problem(config.listen)}")
    return MobKitServer(server, health_servicer, config, port), port


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGTERM/SIGINT. Install it before announcing readiness."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_until_signalled(
    servers: Sequence[MobKitServer], grace: float | None = None, stop: asyncio.Event | None = None
) -> None:
    """Run until SIGTERM/SIGINT, then stop every server gracefully."""
    stop = stop or stop_on_signals()
    try:
        await stop.wait()
    finally:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        await asyncio.gather(*(s.stop(grace) for s in servers))
