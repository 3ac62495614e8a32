"""Flows travel with the roster snapshot (GetRoster/WatchRoster ``flows_json``)."""

from __future__ import annotations

import pytest
from test_flow_document import AGENTS, ASK_TEAM

from mobkit.core.errors import RosterInvalid
from mobkit.roster.document import parse_roster_toml
from mobkit.roster.domain import RosterSnapshot
from mobkit.wire.roster import get_roster_response, snapshot_from_proto, watch_roster_response


def test_flows_survive_the_wire_in_both_responses() -> None:
    doc = parse_roster_toml(AGENTS + ASK_TEAM)
    snapshot = RosterSnapshot(doc.specs, 7, doc.profiles, flows=doc.flows)
    for encode in (get_roster_response, watch_roster_response):
        assert snapshot_from_proto(encode(snapshot)) == snapshot


def test_a_roster_without_flows_sends_none() -> None:
    doc = parse_roster_toml(AGENTS)
    msg = get_roster_response(RosterSnapshot(doc.specs, 1, doc.profiles))
    assert msg.flows_json == ""
    assert snapshot_from_proto(msg).flows == ()


def test_flows_naming_identities_the_specs_lack_are_refused_on_receipt() -> None:
    doc = parse_roster_toml(AGENTS + ASK_TEAM)
    msg = get_roster_response(RosterSnapshot(doc.specs, 7, doc.profiles, flows=doc.flows))
    del msg.specs[0]  # the coordinator
    with pytest.raises(RosterInvalid, match="unknown identity 'coordinator'"):
        snapshot_from_proto(msg)
