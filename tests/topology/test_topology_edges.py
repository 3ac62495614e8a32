"""Edge computation: every policy against a brute-force reference, canonical-form
properties (hypothesis), paging and page tokens."""

from __future__ import annotations

import itertools
import logging
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mobkit.core.errors import InvalidArgument, InvalidIdentity, SelfEdge
from mobkit.core.types import DurableAgentSpec, ManagedPeerEdge, TopologyContext
from mobkit.testing.strategies import identities
from mobkit.topology.domain import MAX_PAGE_SIZE, TopologyProvider, iter_edges
from mobkit.topology.policy import TopologyPolicy
from mobkit.topology.provider import PolicyTopology

names = identities(max_size=4, max_codepoint=0x24F)
teams = st.sampled_from(["red", "blue", "green", None])


def roster(labels: dict[str, str | None]) -> TopologyContext:
    return TopologyContext(
        tuple(
            DurableAgentSpec(identity=i, profile="w", labels={} if t is None else {"team": t})  # type: ignore[arg-type]
            for i, t in labels.items()
        )
    )


def reference(
    policy: TopologyPolicy, targets: list[str], labels: dict[str, str | None]
) -> list[tuple[str, str]]:
    """The definition, pair by pair."""
    out = set()
    for x, y in itertools.combinations(targets, 2):
        linked = (
            policy.full_mesh
            or x in policy.hubs
            or y in policy.hubs
            or any(
                labels.get(x) is not None and labels.get(x) == labels.get(y)
                for _ in policy.label_keys
            )
            or (x, y) in policy.explicit
            or (y, x) in policy.explicit
        )
        if linked:
            out.add((min(x, y), max(x, y)))
    return sorted(out)


policies = st.builds(
    TopologyPolicy,
    full_mesh=st.booleans(),
    hubs=st.lists(names, max_size=2).map(tuple),
    label_keys=st.sampled_from([(), ("team",)]),
    explicit=st.lists(st.tuples(names, names).filter(lambda p: p[0] != p[1]), max_size=4).map(
        tuple
    ),
)
cases = st.tuples(policies, st.dictionaries(names, teams, max_size=9))


@settings(max_examples=200, deadline=None)
@given(cases)
async def test_every_policy_matches_the_reference(
    case: tuple[TopologyPolicy, dict[str, str | None]],
) -> None:
    policy, labels = case
    targets = list(labels)
    edges = await PolicyTopology(policy).compute_edges(targets, roster(labels))
    assert [(e.a, e.b) for e in edges] == reference(policy, targets, labels)


@settings(max_examples=200, deadline=None)
@given(cases, st.randoms(use_true_random=False))
async def test_edges_are_canonical_sorted_unique_and_order_independent(
    case: tuple[TopologyPolicy, dict[str, str | None]], rnd: random.Random
) -> None:
    policy, labels = case
    targets = list(labels)
    provider = PolicyTopology(policy)
    edges = await provider.compute_edges(targets, roster(labels))
    pairs = [(e.a, e.b) for e in edges]
    assert all(a < b for a, b in pairs)  # canonical, hence no self edge
    assert pairs == sorted(set(pairs))  # sorted, no duplicates
    assert {e.a for e in edges} | {e.b for e in edges} <= set(targets)
    shuffled = targets[:]
    rnd.shuffle(shuffled)
    specs = list(roster(labels).roster)
    rnd.shuffle(specs)
    assert await provider.compute_edges(shuffled, TopologyContext(tuple(specs))) == edges
    # Canonicalising again changes nothing (idempotent), whichever way round it is given.
    assert [ManagedPeerEdge.new(b, a) for a, b in pairs] == edges
    assert [ManagedPeerEdge.new(e.a, e.b) for e in edges] == edges


@given(names)
def test_an_edge_to_itself_is_never_built(name: str) -> None:
    with pytest.raises(SelfEdge):
        ManagedPeerEdge.new(name, name)


@settings(max_examples=100, deadline=None)
@given(cases, st.integers(1, 7))
async def test_pages_concatenate_to_the_whole_answer(
    case: tuple[TopologyPolicy, dict[str, str | None]], page_size: int
) -> None:
    policy, labels = case
    provider = PolicyTopology(policy)
    context = roster(labels)
    whole = await provider.compute_edges(list(labels), context)
    paged, token, pages = [], "", 0
    while True:
        page = await provider.compute_edges_page(list(labels), context, page_size, token)
        assert page.total_edges == len(whole)
        assert len(page.edges) <= page_size
        paged.extend(page.edges)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert paged == whole
    assert pages == max(1, -(-len(whole) // page_size))


async def test_hub_and_label_groups_on_the_example_team() -> None:
    provider = PolicyTopology.from_config({"hubs": ["coordinator"], "label_keys": ["pair"]})
    context = TopologyContext(
        (
            DurableAgentSpec(identity="coordinator", profile="c"),  # type: ignore[arg-type]
            DurableAgentSpec(identity="w1", profile="w", labels={"pair": "x"}),  # type: ignore[arg-type]
            DurableAgentSpec(identity="w2", profile="w", labels={"pair": "x"}),  # type: ignore[arg-type]
            DurableAgentSpec(identity="w3", profile="w", labels={"pair": "y"}),  # type: ignore[arg-type]
        )
    )
    edges = await provider.compute_edges(["w3", "w2", "w1", "coordinator"], context)
    assert [(e.a, e.b) for e in edges] == [
        ("coordinator", "w1"),
        ("coordinator", "w2"),
        ("coordinator", "w3"),
        ("w1", "w2"),
    ]
    # Only targets appear: w2 is not active this cycle, and a hub that is not a target adds nothing.
    edges = await provider.compute_edges(["w1", "w3"], context)
    assert edges == []


async def test_explicit_pair_outside_the_targets_is_dropped_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    provider = PolicyTopology.from_config({"explicit": [["a", "b"], ["a", "ghost"]]})
    with caplog.at_level(logging.WARNING, "mobkit.topology"):
        edges = await provider.compute_edges(["a", "b"], TopologyContext())
    assert edges == [ManagedPeerEdge.new("a", "b")]
    assert any("ghost" in r.getMessage() for r in caplog.records)


async def test_self_edge_in_configuration_is_self_edge() -> None:
    provider = PolicyTopology.from_config({"explicit": [["a", "a"]]})
    with pytest.raises(SelfEdge) as info:
        await provider.compute_edges(["a", "b"], TopologyContext())
    assert info.value.reason == "SELF_EDGE" and info.value.metadata == {"identity": "a"}
    with pytest.raises(SelfEdge):
        await provider.compute_edges_page(["b"], TopologyContext())


async def test_bad_requests() -> None:
    provider = PolicyTopology()
    with pytest.raises(InvalidArgument) as info:
        await provider.compute_edges(["a", "b", "a"], TopologyContext())
    assert info.value.field == "target_identities"
    with pytest.raises(InvalidIdentity):
        await provider.compute_edges(["a", "b c"], TopologyContext())
    with pytest.raises(InvalidArgument) as info:
        await provider.compute_edges_page(["a"], TopologyContext(), page_size=-1)
    assert info.value.field == "page_size"
    dup = TopologyContext((DurableAgentSpec(identity="a", profile="p"),) * 2)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument) as info:
        await PolicyTopology.from_config({"label_keys": ["t"]}).compute_edges(["a"], dup)
    assert info.value.field == "context.roster"


async def test_page_tokens_are_checked_against_the_request() -> None:
    provider = PolicyTopology.from_config({"label_keys": ["team"]})
    targets = ["a", "b", "c", "d"]
    context = roster(dict.fromkeys(targets, "red"))
    page = await provider.compute_edges_page(targets, context, page_size=2)
    assert page.next_page_token and page.total_edges == 6
    with pytest.raises(InvalidArgument, match="changed") as info:
        await provider.compute_edges_page([*targets, "e"], context, 2, page.next_page_token)
    assert info.value.field == "page_token"
    relabelled = roster({**dict.fromkeys(targets, "red"), "d": "blue"})
    with pytest.raises(InvalidArgument, match="changed"):
        await provider.compute_edges_page(targets, relabelled, 2, page.next_page_token)
    other = PolicyTopology.from_config({"label_keys": ["tier"]})
    with pytest.raises(InvalidArgument, match="changed"):
        await other.compute_edges_page(targets, context, 2, page.next_page_token)
    for junk in ("nope", "e30", "!!!!"):
        with pytest.raises(InvalidArgument, match="previous page"):
            await provider.compute_edges_page(targets, context, 2, junk)
    # The same request resumes on any replica: the token carries everything needed.
    again = await PolicyTopology.from_config({"label_keys": ["team"]}).compute_edges_page(
        targets, context, 2, page.next_page_token
    )
    assert [(e.a, e.b) for e in again.edges] == [("a", "d"), ("b", "c")]


async def test_page_size_defaults_and_limits() -> None:
    provider = PolicyTopology()
    targets = [f"n{i:03d}" for i in range(400)]  # 79,800 edges
    assert isinstance(provider, TopologyProvider)
    page = await provider.compute_edges_page(targets, TopologyContext())
    assert len(page.edges) == 10_000 and page.total_edges == 79_800
    page = await provider.compute_edges_page(targets, TopologyContext(), page_size=10**9)
    assert len(page.edges) == MAX_PAGE_SIZE
    count = 0
    async for _ in iter_edges(provider, targets, TopologyContext(), page_size=30_000):
        count += 1
    assert count == 79_800


async def test_empty_and_single_target_sets() -> None:
    provider = PolicyTopology()
    page = await provider.compute_edges_page([], TopologyContext())
    assert page.edges == () and page.next_page_token == "" and page.total_edges == 0
    assert await provider.compute_edges(["solo"], TopologyContext()) == []
