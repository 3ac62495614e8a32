"""The event log's etcd keys: the one place that spells them.

* ``<prefix>/events/<instance>/<time ns>-<seq>-<random>-<n>``: one key per appended
  batch of ``n`` events (named in :mod:`mobkit.events.etcd_codec`);
* ``<prefix>/events-meta/head``: rewritten by every append (the latest cursor);
* ``<prefix>/events-meta/floor``: the highest trimmed cursor;
* ``<prefix>/events-meta/trimmer``: the retention round claim.
"""

from __future__ import annotations

from dataclasses import dataclass

from mobkit.etcd.ops import prefix_end


@dataclass(frozen=True, slots=True)
class EventKeys:
    batches: bytes  # the prefix of every batch key
    batches_end: bytes  # its range end
    head: bytes
    floor: bytes
    trimmer: bytes

    @classmethod
    def under(cls, prefix: str) -> EventKeys:
        base = prefix.rstrip("/")
        batches = f"{base}/events/".encode()
        return cls(
            batches=batches,
            batches_end=prefix_end(batches),
            head=f"{base}/events-meta/head".encode(),
            floor=f"{base}/events-meta/floor".encode(),
            trimmer=f"{base}/events-meta/trimmer".encode(),
        )

    def batch(self, instance: str, name: str) -> bytes:
        return self.batches + f"{instance}/{name}".encode()
