"""An ``n``-member static etcd cluster on loopback, for failure tests (leader loss,
pause, restart on the same data and ports). Only tests use it; ``mobkit up`` runs one
:class:`~mobkit.etcd.process.EtcdProcess`."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc

from mobkit.etcd.process import (
    DEFAULT_COMPACTION_MODE,
    DEFAULT_COMPACTION_RETENTION,
    DEFAULT_QUOTA_BYTES,
    HOST,
    START_ATTEMPTS,
    EtcdStartError,
    find_etcd_binary,
    free_ports,
)
from mobkit.testing.etcd_member import EtcdMember

__all__ = ["EtcdCluster"]


class EtcdCluster:
    """An ``n``-member static etcd cluster on loopback (members ``m0`` .. ``m{n-1}``)."""

    def __init__(
        self,
        base_dir: str | Path,
        n: int = 3,
        *,
        binary: str | Path | None = None,
        heartbeat_ms: int = 50,
        election_ms: int = 500,
        unsafe_no_fsync: bool = False,
        startup_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
        quota_backend_bytes: int = DEFAULT_QUOTA_BYTES,
        auto_compaction_mode: str = DEFAULT_COMPACTION_MODE,
        auto_compaction_retention: str = DEFAULT_COMPACTION_RETENTION,
    ) -> None:
        if n < 1:
            raise ValueError("a cluster needs at least one member")
        self.base_dir = Path(base_dir)
        self.n = n
        self._kwargs = {
            "binary": binary if binary is not None else find_etcd_binary(),
            "heartbeat_ms": heartbeat_ms,
            "election_ms": election_ms,
            "unsafe_no_fsync": unsafe_no_fsync,
            "startup_timeout": startup_timeout,
            "extra_args": extra_args,
            "quota_backend_bytes": quota_backend_bytes,
            "auto_compaction_mode": auto_compaction_mode,
            "auto_compaction_retention": auto_compaction_retention,
        }
        self.members: list[EtcdMember] = []

    def _build(self) -> None:
        ports = free_ports(2 * self.n)
        names = [f"m{i}" for i in range(self.n)]
        peers = ",".join(f"{nm}=http://{HOST}:{ports[2 * i + 1]}" for i, nm in enumerate(names))
        token = f"mobkit-{uuid.uuid4().hex[:12]}"
        self.members = [
            EtcdMember(
                self.base_dir / nm,
                name=nm,
                client_port=ports[2 * i],
                peer_port=ports[2 * i + 1],
                initial_cluster=peers,
                cluster_token=token,
                **self._kwargs,  # type: ignore[arg-type]
            )
            for i, nm in enumerate(names)
        ]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def __getitem__(self, index: int) -> EtcdMember:
        return self.members[index]

    def __len__(self) -> int:
        return len(self.members)

    def start(self) -> Self:
        """Start every member and wait until each serves linearizable reads."""
        for attempt in range(START_ATTEMPTS):
            self._spawn_all()
            try:
                for m in self.members:
                    m.wait_healthy()
                return self
            except EtcdStartError:
                if not self._retry_start(attempt):
                    raise
        raise AssertionError("unreachable")

    async def start_async(self) -> Self:
        """:meth:`start` without blocking the event loop while the members boot."""
        for attempt in range(START_ATTEMPTS):
            self._spawn_all()  # in this thread: see _die_with_parent
            try:
                for m in self.members:
                    await m.wait_healthy_async()
                return self
            except EtcdStartError:
                if not self._retry_start(attempt):
                    raise
        raise AssertionError("unreachable")

    def _spawn_all(self) -> None:
        self._build()
        # All members must be up before any can elect a leader and report healthy.
        for m in self.members:
            m.spawn()

    def _retry_start(self, attempt: int) -> bool:
        collided = any(m.port_collision() for m in self.members)
        for m in self.members:
            m.kill()
        if not collided or attempt + 1 == START_ATTEMPTS:
            return False
        shutil.rmtree(self.base_dir, ignore_errors=True)
        return True

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def leader_index(self, timeout: float = 10.0) -> int:
        """Index of the leader, waiting (up to ``timeout``) until the running members
        agree on one that is itself running (after a leader dies: the new leader)."""
        deadline = time.monotonic() + timeout
        while True:
            ids: dict[int, int] = {}
            views: list[int] = []
            for i, m in enumerate(self.members):
                if not m.running or m.paused:
                    continue
                with contextlib.suppress(grpc.RpcError):
                    status = m.status(timeout=0.5)
                    ids[status.header.member_id] = i
                    views.append(status.leader)
            if views and len(set(views)) == 1 and views[0] in ids:
                return ids[views[0]]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no agreed leader among running members within {timeout}s")
            time.sleep(0.05)

    async def leader_index_async(self, timeout: float = 10.0) -> int:
        return await asyncio.to_thread(self.leader_index, timeout)

    def kill(self, index: int) -> None:
        self.members[index].kill()

    def restart(self, index: int, *, graceful: bool = True) -> EtcdMember:
        return self.members[index].restart(graceful=graceful)

    async def restart_async(self, index: int, *, graceful: bool = True) -> EtcdMember:
        return await self.members[index].restart_async(graceful=graceful)

    def pause(self, index: int) -> None:
        self.members[index].pause()

    def resume(self, index: int) -> None:
        self.members[index].resume()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
