"""Periodic etcd compaction, done by one replica at a time.

The model is the Kubernetes API server's compactor (``apiserver/pkg/storage/etcd3/
compact.go``). Every replica runs one :class:`Compactor`. Each interval it tries one
txn on the compaction key ``<prefix>/compaction``::

    If(version(key) == t) Then(put key rev) Else(get key)

* ``t`` is the key's version this replica last saw: a logical clock shared by every
  replica, advanced by one by the single winner of each round.
* ``rev`` is the store revision this replica saw at its previous attempt, one
  interval ago. Only the winner compacts, at ``rev``, so etcd always keeps at least
  one interval of history (watchers and pinned reads that fall behind by less than
  that never see ``compacted``).
* A loser learns the current version and the revision of this reply, and compacts
  at that revision the next time it wins (if the winner dies, a survivor does).

The put is a write: while etcd is out of space (NOSPACE) no round can win, and
compaction then needs an operator (``mobkit etcd recover``) or etcd's own
``--auto-compaction-*``.
"""

from __future__ import annotations

import asyncio
import logging

from mobkit.core.keyspace import Keyspace
from mobkit.etcd.background import Background
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import EtcdCompacted, EtcdError
from mobkit.etcd.ops import compare_version, put_op, range_op, txn_request

log = logging.getLogger("mobkit.etcd.compactor")


def compaction_key(prefix: str) -> bytes:
    return Keyspace(prefix).compaction


class Compactor(Background):
    """Compacts ``client``'s etcd every ``interval`` seconds, coordinated through
    ``<prefix>/compaction`` with every other replica that runs one."""

    task_name = "etcd-compactor"

    def __init__(self, client: EtcdClient, prefix: str, interval: float) -> None:
        if interval <= 0:
            raise ValueError("the compaction interval must be positive")
        self._client = client
        self.key = compaction_key(prefix)
        self.interval = interval
        self._version = 0  # the compaction key's version last seen (the shared clock)
        self._revision = 0  # the store revision at the previous attempt
        #: Revisions this replica compacted at, oldest first.
        self.compacted: list[int] = []

    async def compact_once(self) -> int | None:
        """One round: returns the revision compacted at, or None (lost the round, or
        the first win, which only starts the clock)."""
        request = txn_request(
            [compare_version(self.key, "=", self._version)],
            [put_op(self.key, str(self._revision))],
            [range_op(self.key)],
        )
        reply = await self._client.txn(request)
        previous, self._revision = self._revision, reply.header.revision
        if not reply.succeeded:
            kvs = reply.responses[0].response_range.kvs
            self._version = kvs[0].version if kvs else 0
            return None
        self._version += 1
        if previous == 0:
            return None  # no revision from one interval ago yet
        try:
            await self._client.compact(previous)
        except EtcdCompacted:
            # Already compacted past it (by etcd's own compactor or an operator).
            log.debug("etcd already compacted beyond revision %d", previous)
            return None
        self.compacted.append(previous)
        log.info("compacted etcd at revision %d", previous)
        return previous

    async def run(self) -> None:
        """Until cancelled: a round every interval; failures are logged and retried."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.compact_once()
            except EtcdError as exc:
                log.warning("etcd compaction round failed: %s", exc)
