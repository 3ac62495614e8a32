"""How the etcd event log stores events: batch values, batch key names, cursors.

A batch value is JSON ``{"v": 1, "events": [...]}`` (envelopes without cursor and
event id). A batch key is written once and never changed, so its ``mod_revision`` is
the etcd revision of the append: the cursor of the ``i``-th event of a batch appended
at revision ``r`` is ``r * CURSOR_STRIDE + i``. etcd revisions are global to the
cluster and survive restarts, so cursors are monotonic across replicas; the stride
lets one round trip append a whole batch (every op of an etcd txn shares its
revision). The time and ``n`` in a key's name let retention plan from a keys-only
range (keys written before ``n`` was added are read).

Pure functions, no I/O: :mod:`mobkit.events.etcd_backend` does the round trips.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from typing import Any

from mobkit.core.errors import InvalidArgument, StoreCorruption
from mobkit.events.domain import Batch, Envelope, NewEvent, event_id, wall_clock_ms
from mobkit.gen.etcd.api.etcdserverpb import rpc_pb2
from mobkit.gen.etcd.api.mvccpb import kv_pb2

CURSOR_STRIDE = 1000
"""Cursor slots per etcd revision: ``cursor = revision * CURSOR_STRIDE + index``."""

MAX_BATCH_EVENTS = 256
"""Events per batch key (one etcd round trip); must stay below ``CURSOR_STRIDE``."""

MAX_BATCH_BYTES = 512 * 1024
"""Bytes per batch key, well under etcd's default 1.5 MiB request limit."""

FORMAT = 1

Item = dict[str, Any]
"""One stored event: an envelope without cursor and event id."""


def batch_name(seq: int, n: int) -> str:
    # Time first so keys of one writer sort by age; the counter and random suffix
    # make them unique even if the clock steps back; n (events) is for retention.
    return f"{time.time_ns():020d}-{seq:08d}-{secrets.token_hex(3)}-{n}"


def split(events: Sequence[NewEvent], mob_id: str) -> list[list[Item]]:
    """The items to store, in batches of at most MAX_BATCH_EVENTS and MAX_BATCH_BYTES."""
    now = wall_clock_ms()
    batches: list[list[Item]] = []
    size = 0
    for ev in events:
        item: Item = {
            "mob_id": mob_id,
            "timestamp_ms": now,
            "kind": ev.kind,
            "data": ev.data,
        }
        if ev.identity is not None:
            item["agent_identity"] = ev.identity
        try:
            item_size = len(json.dumps(item))
        except (TypeError, ValueError) as exc:
            raise InvalidArgument("data", f"not JSON-serialisable: {exc}") from exc
        if (
            not batches
            or len(batches[-1]) >= MAX_BATCH_EVENTS
            or size + item_size > MAX_BATCH_BYTES
        ):
            batches.append([])
            size = 0
        batches[-1].append(item)
        size += item_size
    return batches


def encode(items: list[Item]) -> bytes:
    return json.dumps({"v": FORMAT, "events": items}, separators=(",", ":")).encode()


def encode_head(n: int) -> bytes:
    return json.dumps({"n": n}).encode()


def decode(kv: kv_pb2.KeyValue) -> list[Envelope]:
    """The events of one stored batch, with their cursors."""
    try:
        body = json.loads(kv.value)
        if body.get("v") != FORMAT:
            raise ValueError(f"unknown format {body.get('v')!r}")
        items = body["events"]
        base = int(kv.mod_revision) * CURSOR_STRIDE
        return [
            Envelope(
                event_id=event_id(base + i),
                cursor=base + i,
                mob_id=str(item["mob_id"]),
                timestamp_ms=int(item["timestamp_ms"]),
                kind=str(item["kind"]),
                data=item.get("data", {}),
                run_id=item.get("run_id"),
                step_id=item.get("step_id"),
                agent_identity=item.get("agent_identity"),
                mob_labels=dict(item.get("mob_labels", {})),
                run_labels=dict(item.get("run_labels", {})),
            )
            for i, item in enumerate(items)
        ]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreCorruption(
            f"undecodable event batch {kv.key.decode(errors='replace')}: {exc}"
        ) from exc


def batch_of(kv: kv_pb2.KeyValue) -> Batch | None:
    """A batch key's time and size from its name (None: a name without them)."""
    name = kv.key.rsplit(b"/", 1)[-1].decode(errors="replace").split("-")
    if len(name) != 4 or not (name[0].isdigit() and name[3].isdigit()) or name[3] == "0":
        return None
    n, revision = int(name[3]), int(kv.mod_revision)
    last = revision * CURSOR_STRIDE + n - 1
    return Batch(revision, last, n, int(name[0]) // 1_000_000, bytes(kv.key))


def meta_int(resp: rpc_pb2.ResponseOp, name: str) -> int:
    """Field ``name`` of a meta key's JSON value (0: no such key)."""
    kvs = resp.response_range.kvs
    return int(json.loads(kvs[0].value)[name]) if kvs else 0


def latest_from(resp: rpc_pb2.ResponseOp) -> int:
    """The latest cursor, from a read of the head key (0: nothing appended yet)."""
    kvs = resp.response_range.kvs
    if not kvs:
        return 0
    return int(kvs[0].mod_revision) * CURSOR_STRIDE + int(json.loads(kvs[0].value)["n"]) - 1
