"""A roster kept in etcd, for rosters changed at run time.

Layout: ONE key, ``<etcd_prefix>/roster/document``, holds the whole roster
document — the same TOML as a roster file, or the same document as JSON (text
starting with ``{``). One key makes every change atomic, so a watcher can never
see half of an edit; etcd's value limit (1.5 MiB by default) fits thousands of
specs. Change it with ``etcdctl put /mobkit/roster/document "$(cat roster.toml)"``
or :func:`put_roster_document` (optionally compare-and-swap on the revision).

Revision: the key's ``mod_revision``. Every write gets a larger one, and it is
the same for every provider replica and across restarts.

A deleted (or never written) key is reported as an unreadable source, like a
missing roster file: the last valid roster stays current.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from mobkit.core.errors import RosterInvalid, RosterUnavailable
from mobkit.core.keyspace import Keyspace
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdCompacted, EtcdError
from mobkit.etcd.ops import compare_mod_revision, put_op, txn_request
from mobkit.gen.etcd.api.mvccpb import kv_pb2
from mobkit.roster.document import NO_RULES, RosterRules, parse_roster_text
from mobkit.roster.domain import RosterProblem
from mobkit.roster.state import RosterState

log = logging.getLogger("mobkit.roster")

_RETRY_DELAY = 0.5


def roster_key(etcd_prefix: str) -> str:
    """``/mobkit`` -> ``/mobkit/roster/document`` (a trailing ``/`` is fine too)."""
    return Keyspace(etcd_prefix).roster_document.decode()


class EtcdRoster(RosterState):
    """Serves the roster stored at one etcd key and follows its changes (module doc)."""

    def __init__(
        self,
        client: EtcdClient,
        key: str,
        *,
        rules: RosterRules = NO_RULES,
    ) -> None:
        super().__init__(f"etcd key {key}")
        self.client = client
        self.key = key
        self._rules = rules
        self._lock = asyncio.Lock()
        self._seen = 0  # etcd revision of the last change handled
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> EtcdRoster:
        """Read the key, then watch it from the revision after that read."""
        header = await self._read()
        self._task = asyncio.create_task(self._follow(header + 1), name=f"roster-watch {self.key}")
        return self

    async def close(self) -> None:
        """Stop following the source; open watches end with BACKEND_UNAVAILABLE."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self.fail(RosterUnavailable("the roster provider was closed", self.source))

    async def refresh(self) -> None:
        await self._read()

    async def _read(self) -> int:
        """Linearizable read of the key; returns the read's header revision."""
        try:
            reply = await self.client.range(self.key)
        except EtcdError as exc:
            raise RosterUnavailable(str(exc), "etcd") from exc
        kv = reply.kvs[0] if reply.kvs else None
        async with self._lock:
            # A missing key has no revision of its own: the read's stands for it.
            self._apply(kv, kv.mod_revision if kv is not None else reply.header.revision)
        return int(reply.header.revision)

    def _apply(self, kv: kv_pb2.KeyValue | None, revision: int) -> None:
        if revision <= self._seen:
            return  # already handled (the watch and a read both deliver each change)
        self._seen = revision
        if kv is None:
            self.reject(
                RosterProblem(message=f"no roster stored at etcd key {self.key}", unreadable=True)
            )
            return
        try:
            document = parse_roster_text(kv.value, rules=self._rules)
        except RosterInvalid as exc:
            self.reject(RosterProblem.from_error(exc))
            return
        self.accept(document, revision=kv.mod_revision)

    async def _follow(self, start_revision: int) -> None:
        """Apply every change of the key; re-read when history was compacted away."""
        while True:
            try:
                async for event in self.client.watch(self.key, start_revision=start_revision):
                    deleted = event.type == kv_pb2.Event.DELETE
                    async with self._lock:
                        self._apply(None if deleted else event.kv, event.kv.mod_revision)
                    start_revision = event.kv.mod_revision + 1
            except EtcdCompacted:
                log.info("roster watch on %s compacted; re-reading", self.key)
            except EtcdError as exc:
                if self.client.closed:
                    self.fail(RosterUnavailable(f"etcd client closed: {exc}", "etcd"))
                    return
                log.warning("roster watch on %s failed (%s); retrying", self.key, exc)
            try:
                start_revision = await self._read() + 1
            except RosterUnavailable as exc:
                log.warning("re-reading roster key %s failed (%s); retrying", self.key, exc)
                await asyncio.sleep(_RETRY_DELAY)


async def put_roster_document(
    client: EtcdClient, key: str, text: str, *, expected_revision: int | None = None
) -> int | None:
    """Store a roster document (TOML or JSON text); returns its revision.

    With ``expected_revision`` the write happens only if the key's current
    ``mod_revision`` is that value (0: the key must not exist), else None is
    returned and nothing changes. The text is not validated here: a bad roster
    is reported by the providers watching the key, which keep the last valid one.
    """
    if expected_revision is None:
        reply = await client.put(key, text)
        return int(reply.header.revision)
    txn = await client.txn(
        txn_request(
            compare=[compare_mod_revision(key, "=", expected_revision)],
            success=[put_op(key, text)],
        )
    )
    return int(txn.header.revision) if txn.succeeded else None
