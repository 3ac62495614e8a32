"""Topology policies from the ``[topology]`` configuration section.

Policies combine by union::

    [topology]
    policies = ["hub", "by_label", "explicit"]   # any of: none, full_mesh, hub, by_label, explicit
    hubs = ["coordinator"]                        # hub: each hub is linked to every identity
    label_keys = ["team"]                         # by_label: same value for a key -> meshed
    explicit = [["coordinator", "worker-1"]]      # explicit: these pairs

``policies`` may be left out: it is then every policy whose setting is given
(``hubs`` -> hub, ...), and ``full_mesh`` when none is — so a small team needs
no configuration at all. ``none`` alone gives no edges. Listing a setting for a
policy that ``policies`` does not enable is an error, not silently ignored.

Rules for identities outside the target set: hubs that are not targets are
skipped (a hub not active this cycle is normal); an explicit pair naming a
non-target is dropped with a logged warning. An explicit pair from an identity
to itself is kept here and refused with SELF_EDGE by every computation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import identity_problem

POLICIES = ("none", "full_mesh", "hub", "by_label", "explicit")
SETTING_OF = {"hub": "hubs", "by_label": "label_keys", "explicit": "explicit"}
SECTION_KEYS = frozenset({"policies", *SETTING_OF.values()})


@dataclass(frozen=True, slots=True)
class TopologyPolicy:
    full_mesh: bool = False
    hubs: tuple[str, ...] = ()
    label_keys: tuple[str, ...] = ()
    explicit: tuple[tuple[str, str], ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        enabled = (
            ("full_mesh", self.full_mesh),
            ("hub", bool(self.hubs)),
            ("by_label", bool(self.label_keys)),
            ("explicit", bool(self.explicit)),
        )
        return tuple(name for name, on in enabled if on) or ("none",)

    @property
    def self_edges(self) -> tuple[str, ...]:
        """Identities an explicit pair links to themselves (refused when computing)."""
        return tuple(a for a, b in self.explicit if a == b)

    def digest(self) -> str:
        """Changes whenever the policy does: page tokens of another policy are refused."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> TopologyPolicy:
        section = section or {}
        for key in section:
            if key not in SECTION_KEYS:
                expected = ", ".join(sorted(SECTION_KEYS))
                raise InvalidArgument(f"topology.{key}", f"unknown setting (expected {expected})")
        raw = section.get("policies")
        if raw is None:
            names = [p for p, s in SETTING_OF.items() if s in section] or ["full_mesh"]
        else:
            names = [raw] if isinstance(raw, str) else raw
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise InvalidArgument("topology.policies", "must be a policy name or a list")
            for name in names:
                if name not in POLICIES:
                    raise InvalidArgument(
                        "topology.policies", f"unknown policy {name!r} ({', '.join(POLICIES)})"
                    )
            for policy, setting in SETTING_OF.items():
                if setting in section and policy not in names:
                    raise InvalidArgument(
                        f"topology.{setting}", f"given but the {policy!r} policy is not enabled"
                    )
        for policy, setting in SETTING_OF.items():
            if policy in names and not section.get(setting):
                raise InvalidArgument(f"topology.{setting}", f"the {policy!r} policy needs it")
        return cls(
            full_mesh="full_mesh" in names,
            hubs=_identities(section.get("hubs", []), "topology.hubs"),
            label_keys=_strings(section.get("label_keys", []), "topology.label_keys"),
            explicit=_pairs(section.get("explicit", [])),
        )


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidArgument(field, "must be a list of non-empty strings")
    return tuple(dict.fromkeys(value))


def _identities(value: Any, field: str) -> tuple[str, ...]:
    out = _strings(value, field)
    for ident in out:
        problem = identity_problem(ident)
        if problem is not None:
            raise InvalidArgument(field, f"invalid identity {ident!r}: {problem}")
    return out


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list):
        raise InvalidArgument("topology.explicit", "must be a list of [a, b] pairs")
    pairs: list[tuple[str, str]] = []
    for i, pair in enumerate(value):
        field = f"topology.explicit[{i}]"
        if not isinstance(pair, list) or len(pair) != 2:
            raise InvalidArgument(field, "must be a pair [a, b]")
        a, b = _identities(pair[:1], field) + _identities(pair[1:], field)
        pairs.append((a, b))
    return tuple(pairs)
