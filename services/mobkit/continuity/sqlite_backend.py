"""SQLite engine: the embedded single-node default.

One table of logical keys (see :mod:`mobkit.continuity.codec`) in a WAL-mode database
with ``synchronous=FULL``: every commit is fsynced before it is acknowledged, so the
store reports ``SyncWriteThrough`` (checked by reading the pragmas back). Each operation
is atomic (a transaction of its own, or a savepoint in a group commit, below), so a
record and its snapshot change together or not at all, also across a crash.

SQLite calls block, so they run on one dedicated thread owning the one connection; the
event loop (and the gRPC server on it) stays responsive, and operations are serialised
in the order they were submitted.

Group commit: operations that arrive while a transaction is being committed wait, and
then run together in the next ``BEGIN IMMEDIATE`` transaction (reads too, so that all
run in submission order), each inside its own savepoint. A refused or
failing operation rolls back to its savepoint and leaves no trace; the others share one
fsynced COMMIT, and none is acknowledged before it. Under concurrency that is one fsync
for many writers instead of one each, with every operation's rules unchanged.

A plan's chunk writes and deletions (staged, garbage) land in its own transaction, so a
crash never leaves unreferenced chunks behind here. Expiring rows (receipts) carry
``expires_at``; a transaction deletes the expired ones at most every ``sweep_interval``
seconds, a bounded batch at a time.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self, TypeVar

from mobkit.continuity.domain import (
    DEFAULT_RECEIPT_RETENTION_SECONDS,
    DEFAULT_SNAPSHOT_LIMIT_BYTES,
)
from mobkit.continuity.operations import (
    Commit,
    Plan,
    PlanStore,
    Read,
    ReadResult,
    StoredValue,
    drive,
)
from mobkit.continuity.rules import Unreadable
from mobkit.core.errors import BackendFull, StoreCorruption, StoreUnavailable
from mobkit.core.types import DurabilityPolicy, SyncWriteThrough
from mobkit.etcd.ops import prefix_end

T = TypeVar("T")

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
"""1: ``continuity_kv(key, value)``; 2 adds ``expires_at`` (ms since the epoch)."""
_PARAMS_PER_SELECT = 500  # below SQLITE_MAX_VARIABLE_NUMBER on every build
_BUSY_TIMEOUT_MS = 5000  # another process holding the write lock (not normal, but safe)
_FULL = 2
GROUP_MAX = 256  # operations per transaction: bounds how long the first one waits
SWEEP_BATCH = 1000  # expired rows deleted per transaction


class SqliteContinuityStore(PlanStore):
    """Open with :meth:`open`; close with :meth:`close`."""

    def __init__(
        self,
        path: Path,
        executor: ThreadPoolExecutor,
        conn: sqlite3.Connection,
        *,
        snapshot_limit_bytes: int,
        receipt_retention: float = DEFAULT_RECEIPT_RETENTION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            snapshot_limit_bytes=snapshot_limit_bytes,
            receipt_retention=receipt_retention,
            clock=clock,
        )
        self.path = path
        self._executor = executor
        self._conn = conn
        self._closed = False
        self._pending: list[tuple[Callable[[], Plan[Any]], asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self.transactions = 0  # committed or rolled back; group commit keeps it low
        self.sweep_interval = 60.0
        self._next_sweep_ms = 0
        self.on_full: Callable[[str], None] | None = None
        """Told the detail when the disk fills up (health, metric, status follow it)."""
        self.on_recovered: Callable[[], None] | None = None
        self._full = False
        self.on_unavailable: Callable[[str], None] | None = None
        """Told the detail when the file fails (I/O error, read-only, locked by another
        process): health follows it, like an unreachable etcd."""
        self.on_available: Callable[[], None] | None = None
        self._failing = False

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        snapshot_limit_bytes: int = DEFAULT_SNAPSHOT_LIMIT_BYTES,
        receipt_retention: float = DEFAULT_RECEIPT_RETENTION_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> Self:
        path = Path(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mobkit-continuity-sqlite")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, _connect, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(
            path,
            executor,
            conn,
            snapshot_limit_bytes=snapshot_limit_bytes,
            receipt_retention=receipt_retention,
            clock=clock,
        )

    @property
    def durability_policy(self) -> DurabilityPolicy:
        return SyncWriteThrough()  # _connect refuses to open without synchronous=FULL

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await super().close()
        if self._flusher is not None:
            await self._flusher  # what was submitted before close still runs
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)

    async def _execute(self, make_plan: Callable[[], Plan[T]], *, writes: bool) -> T:
        if self._closed:
            raise StoreUnavailable("store is closed", backend="sqlite")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((make_plan, future))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="sqlite-group-commit")
        return await future

    async def _flush(self) -> None:
        """Run what is pending, a group per transaction, until nothing is."""
        loop = asyncio.get_running_loop()
        group: list[tuple[Callable[[], Plan[Any]], asyncio.Future[Any]]] = []
        try:
            while self._pending:
                group, self._pending = self._pending[:GROUP_MAX], self._pending[GROUP_MAX:]
                plans = [make_plan for make_plan, _ in group]
                try:
                    outcomes = await loop.run_in_executor(self._executor, self._group, plans)
                except RuntimeError as exc:  # executor shut down under us
                    outcomes = [StoreUnavailable(str(exc), backend="sqlite")] * len(group)
                self._track_space(outcomes)
                self._track_failure(outcomes)
                for (_, future), outcome in zip(group, outcomes, strict=True):
                    if future.done():  # the caller gave up waiting: the outcome stands
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
                group = []
        finally:
            self._flusher = None
            # Cancelled (the loop closing): nobody may wait forever on an answer.
            for _, future in [*group, *self._pending]:
                if not future.done():
                    future.set_exception(StoreUnavailable("store is closing", backend="sqlite"))
            self._pending = []

    def _track_space(self, outcomes: list[object]) -> None:
        full = next((o for o in outcomes if isinstance(o, BackendFull)), None)
        if full is not None and not self._full:
            self._full = True
            if self.on_full is not None:
                self.on_full(full.detail)
        elif (
            full is None and self._full and any(not isinstance(o, BaseException) for o in outcomes)
        ):
            self._full = False  # a transaction committed again
            if self.on_recovered is not None:
                self.on_recovered()

    def _track_failure(self, outcomes: list[object]) -> None:
        failed = next((o for o in outcomes if isinstance(o, StoreUnavailable)), None)
        if failed is not None and not self._failing and not self._closed:
            self._failing = True
            if self.on_unavailable is not None:
                self.on_unavailable(f"unusable at {self.path} ({failed.detail})")
        elif failed is None and self._failing:
            self._failing = False  # a transaction ran again
            if self.on_available is not None:
                self.on_available()

    # -- on the connection's thread -------------------------------------------------

    def _group(self, plans: list[Callable[[], Plan[Any]]]) -> list[object]:
        """One transaction for all of ``plans``, each atomic on its own (a savepoint).
        A database error (I/O, a failed COMMIT) fails every plan of the group: none of
        them is durable, and none was acknowledged."""
        conn = self._conn
        outcomes: list[object] = []
        alone = len(plans) == 1  # no savepoint needed: the transaction is the plan's
        self.transactions += 1
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                self._sweep()
                for make_plan in plans:
                    if not alone:
                        conn.execute("SAVEPOINT op")
                    try:
                        commit = drive(make_plan(), self._read)
                        if commit.writes:
                            self._apply(commit)
                            self.bytes_written += commit.put_bytes
                    except sqlite3.DatabaseError:
                        raise
                    except Exception as exc:  # a refusal, or corrupt bytes: this plan only
                        conn.execute("ROLLBACK" if alone else "ROLLBACK TO op")
                        outcomes.append(exc)
                    else:
                        outcomes.append(commit.result)
                    if not alone:
                        conn.execute("RELEASE op")
                if conn.in_transaction:
                    conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            return [_backend_error(exc)] * len(plans)
        return outcomes

    def _sweep(self) -> None:
        now = self._now_ms()
        if now < self._next_sweep_ms:
            return
        self._next_sweep_ms = now + int(self.sweep_interval * 1000)
        self._conn.execute(
            "DELETE FROM continuity_kv WHERE key IN (SELECT key FROM continuity_kv "
            "WHERE expires_at <= ? LIMIT ?)",
            (now, SWEEP_BATCH),
        )

    def _read(self, request: Read) -> ReadResult:
        try:
            listed: tuple[bytes, ...] = ()
            if request.list_prefix is not None:
                prefix = request.list_prefix
                rows = self._conn.execute(
                    "SELECT key FROM continuity_kv WHERE key >= ? AND key < ? ORDER BY key",
                    (prefix, prefix_end(prefix)),
                )
                listed = tuple(bytes(k) for (k,) in rows)
            return ReadResult(self._select(request.keys), listed=listed)
        except sqlite3.OperationalError as exc:
            if not request.tolerate_unavailable:
                raise
            return ReadResult([Unreadable(f"sqlite: {exc}")] * len(request.keys))

    def _select(self, keys: Sequence[bytes]) -> list[StoredValue]:
        found: dict[bytes, bytes] = {}
        for start in range(0, len(keys), _PARAMS_PER_SELECT):
            chunk = keys[start : start + _PARAMS_PER_SELECT]
            marks = ",".join("?" * len(chunk))
            # CAST: a value tampered into TEXT must reach the checksum as bytes, not fail
            # UTF-8 decoding here (that would look like an outage, not corruption).
            rows = self._conn.execute(
                f"SELECT key, CAST(value AS BLOB) FROM continuity_kv WHERE key IN ({marks})",
                chunk,
            )
            found.update(rows)
        return [found.get(k) for k in keys]

    def _apply(self, commit: Commit[T]) -> None:
        conn = self._conn
        for prefix in commit.delete_prefixes:
            conn.execute(
                "DELETE FROM continuity_kv WHERE key >= ? AND key < ?",
                (prefix, prefix_end(prefix)),
            )
        deletes = (*commit.deletes, *commit.garbage)
        if deletes:
            conn.executemany("DELETE FROM continuity_kv WHERE key = ?", [(k,) for k in deletes])
        upsert = (
            "INSERT INTO continuity_kv (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
            "expires_at = excluded.expires_at"
        )
        conn.executemany(
            upsert, [(k, v, None) for k, v in (*commit.staged.items(), *commit.puts.items())]
        )
        conn.executemany(upsert, [(k, v, at) for k, (v, at) in commit.expiring.items()])


def _connect(path: Path) -> sqlite3.Connection:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit (BEGIN IMMEDIATE ... COMMIT).
        conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
    except (OSError, sqlite3.Error) as exc:
        raise StoreUnavailable(f"cannot open {path}: {exc}", backend="sqlite") from exc
    try:
        (mode,) = conn.execute("PRAGMA journal_mode=WAL").fetchone()
        if str(mode).lower() != "wal":  # e.g. a filesystem without shared memory
            log.warning("%s: journal_mode is %s, not wal (still fsynced)", path, mode)
        conn.execute("PRAGMA synchronous=FULL")
        synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
        if synchronous < _FULL:
            raise StoreUnavailable(
                f"{path}: synchronous={synchronous}, need FULL for write-through durability",
                backend="sqlite",
            )
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"{path} has schema version {version}, this build knows {SCHEMA_VERSION}",
                backend="sqlite",
            )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS continuity_kv "
            "(key BLOB PRIMARY KEY, value BLOB NOT NULL, expires_at INTEGER) WITHOUT ROWID"
        )
        columns = {row[1] for row in conn.execute("PRAGMA table_info(continuity_kv)")}
        if "expires_at" not in columns:  # a schema 1 file
            conn.execute("ALTER TABLE continuity_kv ADD COLUMN expires_at INTEGER")
        conn.execute(
            "CREATE INDEX IF NOT EXISTS continuity_kv_expiry ON continuity_kv (expires_at) "
            "WHERE expires_at IS NOT NULL"
        )
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise _backend_error(exc) from exc
    except BaseException:
        conn.close()
        raise
    return conn


def _backend_error(
    exc: sqlite3.DatabaseError,
) -> StoreUnavailable | StoreCorruption | BackendFull:
    """Locked/busy/unopenable files are outages; a full disk is ``BackendFull``; a
    malformed file is corruption."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return BackendFull(str(exc), backend="sqlite")
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(str(exc), backend="sqlite")
    if "malformed" in str(exc) or "not a database" in str(exc):
        return StoreCorruption(f"sqlite: {exc}")
    return StoreUnavailable(str(exc), backend="sqlite")
