"""The event log's etcd keys, as :class:`~mobkit.core.keyspace.Keyspace` spells them.

* ``<prefix>/events/<instance>/<time ns>-<seq>-<random>-<n>``: one key per appended
  batch of ``n`` events (named in :mod:`mobkit.events.etcd_codec`);
* ``<prefix>/events-meta/head``: rewritten by every append (the latest cursor);
* ``<prefix>/events-meta/floor``: the highest trimmed cursor;
* ``<prefix>/events-meta/trimmer``: the retention round claim.
"""

from __future__ import annotations

from dataclasses import dataclass

from mobkit.core.keyspace import Keyspace
from mobkit.etcd.ops import prefix_end


@dataclass(frozen=True, slots=True)
class EventKeys:
    batches: bytes  # the prefix of every batch key
    batches_end: bytes  # its range end
    head: bytes
    floor: bytes
    trimmer: bytes

    keyspace: Keyspace

    @classmethod
    def under(cls, prefix: str) -> EventKeys:
        keys = Keyspace(prefix)
        return cls(
            batches=keys.events,
            batches_end=prefix_end(keys.events),
            head=keys.events_head,
            floor=keys.events_floor,
            trimmer=keys.events_trimmer,
            keyspace=keys,
        )

    def batch(self, instance: str, name: str) -> bytes:
        return self.keyspace.event_batch(instance, name)
