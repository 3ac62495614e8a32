"""The event log's etcd layout, byte for byte: keys, names and values that stored logs
and other replicas already read (docs/architecture.md, "etcd key layout")."""

from __future__ import annotations

import re

from mobkit.events import etcd_codec as codec
from mobkit.events.domain import NewEvent
from mobkit.events.keys import EventKeys
from mobkit.gen.etcd.api.mvccpb import kv_pb2


def test_keys_under_a_prefix_with_or_without_its_slash() -> None:
    for prefix in ("/mobkit", "/mobkit/"):
        keys = EventKeys.under(prefix)
        assert keys.batches == b"/mobkit/events/"
        assert keys.batches_end == b"/mobkit/events0"
        assert keys.head == b"/mobkit/events-meta/head"
        assert keys.floor == b"/mobkit/events-meta/floor"
        assert keys.trimmer == b"/mobkit/events-meta/trimmer"


def test_a_batch_key_names_its_writer_time_counter_random_and_size() -> None:
    key = EventKeys.under("/mobkit").batch("r1", codec.batch_name(7, 3))
    assert re.fullmatch(rb"/mobkit/events/r1/\d{20}-00000007-[0-9a-f]{6}-3", key)
    batch = codec.batch_of(kv_pb2.KeyValue(key=key, mod_revision=42))
    assert batch is not None
    assert (batch.order, batch.n, batch.last) == (42, 3, 42 * codec.CURSOR_STRIDE + 2)


def test_values_are_compact_json_of_format_1() -> None:
    (items,) = codec.split([NewEvent("k", "a", {"x": 1}), NewEvent("k", None, {})], "mob")
    value = codec.encode(items)
    assert value.startswith(b'{"v":1,"events":[{"mob_id":"mob","timestamp_ms":')
    assert value.endswith(b'"kind":"k","data":{}}]}')
    assert b'"agent_identity":"a"' in value and value.count(b"agent_identity") == 1
    assert codec.encode_head(2) == b'{"n": 2}'
    decoded = codec.decode(kv_pb2.KeyValue(key=b"k", value=value, mod_revision=5))
    assert [e.cursor for e in decoded] == [5000, 5001]
    assert [e.event_id for e in decoded] == ["mob-evt-5000", "mob-evt-5001"]
