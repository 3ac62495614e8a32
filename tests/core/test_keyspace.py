"""The etcd key layout is stored data: these are the exact bytes existing clusters hold
(docs/architecture.md, "etcd key layout")."""

from __future__ import annotations

import hashlib

import pytest

from mobkit.core.holder import Holder
from mobkit.core.keyspace import Keyspace


@pytest.mark.parametrize("prefix", ["/mobkit", "/mobkit/", "/mobkit//"])
def test_every_key_matches_the_documented_layout(prefix: str) -> None:
    ks = Keyspace(prefix)
    tag = hashlib.blake2b(b"s/1", digest_size=12).hexdigest()
    receipt = hashlib.sha256(b"k").hexdigest()
    assert ks.lease("a") == b"/mobkit/leases/a"
    assert ks.lease_session(5, "i~1@h:1") == b"/mobkit/lease-sessions/5/i~1@h:1"
    assert ks.record("a") == b"/mobkit/continuity/records/a"
    assert ks.snapshot("a", "s/1") == b"/mobkit/continuity/snapshots/a/s/1"
    assert ks.chunk("a", "s/1", "d") == f"/mobkit/continuity/chunks/a/{tag}/d".encode()
    assert ks.receipt("a", "k") == f"/mobkit/continuity/receipts/a/{receipt}".encode()
    assert ks.session("s/1") == b"/mobkit/continuity/sessions/s/1"
    assert ks.roster_document == b"/mobkit/roster/document"
    assert ks.replica("i~1@h:1") == b"/mobkit/replicas/i~1@h:1"
    assert ks.intent("a") == b"/mobkit/intents/a"
    assert ks.event_batch("w", "1-2-3-4") == b"/mobkit/events/w/1-2-3-4"
    assert ks.events_head == b"/mobkit/events-meta/head"
    assert ks.events_floor == b"/mobkit/events-meta/floor"
    assert ks.events_trimmer == b"/mobkit/events-meta/trimmer"
    assert ks.compaction == b"/mobkit/compaction"


def test_lease_keys_are_recognised_and_name_their_identity() -> None:
    ks = Keyspace("/p")
    assert ks.is_lease(ks.lease("x")) and not ks.is_lease(ks.record("x"))
    assert ks.lease_identity(ks.lease("x")) == "x"
    assert ks.is_lease_session(ks.lease_session(2, "h"))
    assert not ks.is_lease_session(ks.lease("x"))


def test_the_root_prefix_keeps_its_leading_slash() -> None:
    assert Keyspace("/").lease("a") == b"/leases/a"


def test_a_holder_formats_and_reads_itself() -> None:
    fresh = Holder.fresh("orch@1", "10.0.0.5:7000")
    instance, rest = str(fresh).split("~", 1)
    assert instance == "orch@1" and rest.endswith("@10.0.0.5:7000")
    assert fresh.address == "10.0.0.5:7000"
    assert fresh.instance == "orch@1"
    assert Holder.fresh("orch@1", "h:1") != Holder.fresh("orch@1", "h:1")  # incarnations
    plain = Holder("a~1@127.0.0.1:1")
    assert (plain.address, plain.replica, plain.instance) == ("127.0.0.1:1", "a~1", "a")
    assert Holder("no-address").address is None and Holder("x@").address is None
