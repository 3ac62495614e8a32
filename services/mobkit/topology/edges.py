"""The edges of one request, computed row by row without materialising them all.

Identities are sorted and numbered; row ``i`` holds the partners ``j > i`` of
identity ``i``, as a bitmask (a Python int). Every edge ``(ids[i], ids[j])``
is then canonical (``a < b``) by construction, each pair appears once, and
walking rows in order walks the edges in ``(a, b)`` order. Union of policies
is a bitwise OR:

* full mesh: every ``j > i`` (a plain range, no masks at all);
* hub: a hub's row is every ``j > i``; any other row gets the hubs after it;
* by label: the members of every label group ``i`` belongs to;
* explicit: the configured partners.

Cost per request: O(n) big-int operations of n bits for the total count
(O(1) for a full mesh); memory: one n-bit mask per label group of two or more
members, and one page of edges.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping, Sequence

from mobkit.core.errors import InvalidArgument, SelfEdge
from mobkit.core.identity import AgentIdentity, parse_identities
from mobkit.core.types import ManagedPeerEdge, TopologyContext
from mobkit.topology.policy import TopologyPolicy

log = logging.getLogger("mobkit.topology")


def _bits(mask: int) -> Iterator[int]:
    """Positions of the set bits of ``mask``, ascending."""
    text = bin(mask)[:1:-1]  # least significant bit first
    pos = text.find("1")
    while pos != -1:
        yield pos
        pos = text.find("1", pos + 1)


class EdgeSet:
    """The canonical edges of ``policy`` over ``target_identities`` (see module doc)."""

    def __init__(
        self,
        policy: TopologyPolicy,
        target_identities: Sequence[str],
        context: TopologyContext,
        *,
        warn: bool = True,
    ) -> None:
        if policy.self_edges:
            raise SelfEdge(policy.self_edges[0])
        self.ids: list[str] = sorted(parse_identities(target_identities, field="target_identities"))
        self.index = {ident: i for i, ident in enumerate(self.ids)}
        n = len(self.ids)
        self._n = n
        self._full = policy.full_mesh
        labels = _labels(context) if policy.label_keys else {}
        self.fingerprint = _fingerprint(policy, self.ids, labels)
        self._hubs = 0
        self._is_hub = 0
        self._links: dict[int, int] = {}
        if self._full:
            return
        for hub in policy.hubs:
            i = self.index.get(hub)
            if i is not None:
                self._is_hub |= 1 << i
        self._hubs = self._is_hub
        for key in policy.label_keys:
            groups: dict[str, list[int]] = {}
            for ident, i in self.index.items():
                value = labels.get(ident, {}).get(key)
                if value is not None:
                    groups.setdefault(value, []).append(i)
            for members in groups.values():
                if len(members) < 2:
                    continue
                mask = 0
                for i in members:
                    mask |= 1 << i
                for i in members:
                    self._links[i] = self._links.get(i, 0) | mask
        for a, b in policy.explicit:
            ia, ib = self.index.get(a), self.index.get(b)
            if ia is None or ib is None:
                if warn:
                    missing = a if ia is None else b
                    log.warning(
                        "explicit edge %s-%s dropped: %s is not a target identity", a, b, missing
                    )
                continue
            self._links[ia] = self._links.get(ia, 0) | (1 << ib)
            self._links[ib] = self._links.get(ib, 0) | (1 << ia)

    def __len__(self) -> int:
        """The total number of edges."""
        n = self._n
        if self._full:
            return n * (n - 1) // 2
        return sum(self._row(i).bit_count() for i in range(n))

    def _row(self, i: int) -> int:
        """Partners ``j > i`` of identity ``i`` (not for a full mesh)."""
        above = ~((1 << (i + 1)) - 1)
        if self._is_hub >> i & 1:
            return ((1 << self._n) - 1) & above
        return (self._hubs | self._links.get(i, 0)) & above

    def pairs(self, after: tuple[int, int] | None = None) -> Iterator[tuple[int, int]]:
        """Index pairs ``(i, j)`` in order, starting after the pair ``after``."""
        i0, j0 = after if after is not None else (0, -1)
        for i in range(i0, self._n):
            start = j0 + 1 if i == i0 else i + 1
            if self._full:
                for j in range(max(start, i + 1), self._n):
                    yield i, j
                continue
            row = self._row(i)
            if i == i0:
                row = row >> start << start
            for j in _bits(row):
                yield i, j

    def edge(self, i: int, j: int) -> ManagedPeerEdge:
        return ManagedPeerEdge(AgentIdentity(self.ids[i]), AgentIdentity(self.ids[j]))

    def position(self, a: str, b: str) -> tuple[int, int]:
        """The index pair of an edge served before (from a page token)."""
        try:
            return self.index[a], self.index[b]
        except KeyError:
            raise InvalidArgument(
                "page_token", "names an identity outside the target set"
            ) from None

    def __iter__(self) -> Iterator[ManagedPeerEdge]:
        for i, j in self.pairs():
            yield self.edge(i, j)


def _labels(context: TopologyContext) -> dict[str, Mapping[str, str]]:
    out: dict[str, Mapping[str, str]] = {}
    for spec in context.roster:
        if spec.identity in out:
            raise InvalidArgument("context.roster", f"duplicate identity {spec.identity!r}")
        out[spec.identity] = spec.labels
    return out


def _fingerprint(
    policy: TopologyPolicy, ids: Sequence[str], labels: Mapping[str, Mapping[str, str]]
) -> str:
    """What a page token must match: the policy, the targets and the labels it reads."""
    h = hashlib.sha256(policy.digest().encode())
    for ident in ids:
        h.update(ident.encode() + b"\0")
        for key in policy.label_keys:
            value = labels.get(ident, {}).get(key)
            h.update(b"\1" if value is None else b"\2" + value.encode() + b"\0")
    return h.hexdigest()[:24]
