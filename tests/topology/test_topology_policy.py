"""The ``[topology]`` section: policies, inference, and refused configurations."""

from __future__ import annotations

from typing import Any

import pytest

from mobkit.core.errors import InvalidArgument
from mobkit.topology.policy import TopologyPolicy


def test_no_configuration_is_a_full_mesh() -> None:
    assert TopologyPolicy.from_config(None) == TopologyPolicy(full_mesh=True)
    assert TopologyPolicy.from_config({}).names == ("full_mesh",)


def test_policies_are_inferred_from_their_settings() -> None:
    policy = TopologyPolicy.from_config({"hubs": ["coordinator"], "label_keys": "team"})
    assert policy.names == ("hub", "by_label")
    assert policy.hubs == ("coordinator",) and policy.label_keys == ("team",)
    assert not policy.full_mesh


def test_explicit_policy_list() -> None:
    policy = TopologyPolicy.from_config(
        {"policies": ["full_mesh", "explicit"], "explicit": [["a", "b"], ["c", "c"]]}
    )
    assert policy.full_mesh and policy.explicit == (("a", "b"), ("c", "c"))
    assert policy.self_edges == ("c",)
    assert TopologyPolicy.from_config({"policies": "none"}).names == ("none",)


def test_digest_follows_the_policy() -> None:
    a = TopologyPolicy.from_config({"hubs": ["x"]})
    assert a.digest() == TopologyPolicy.from_config({"hubs": ["x"]}).digest()
    assert a.digest() != TopologyPolicy.from_config({"hubs": ["y"]}).digest()


@pytest.mark.parametrize(
    ("section", "field"),
    [
        ({"policy": "hub"}, "topology.policy"),
        ({"policies": ["star"]}, "topology.policies"),
        ({"policies": [1]}, "topology.policies"),
        ({"policies": ["hub"]}, "topology.hubs"),
        ({"policies": ["by_label"], "label_keys": []}, "topology.label_keys"),
        ({"policies": ["full_mesh"], "hubs": ["a"]}, "topology.hubs"),
        ({"hubs": ["a b"]}, "topology.hubs"),
        ({"hubs": "a/b"}, "topology.hubs"),
        ({"label_keys": [""]}, "topology.label_keys"),
        ({"explicit": [["a"]]}, "topology.explicit[0]"),
        ({"explicit": [["a", "b c"]]}, "topology.explicit[0]"),
        ({"explicit": "a-b"}, "topology.explicit"),
    ],
)
def test_bad_configuration(section: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        TopologyPolicy.from_config(section)
    assert info.value.field == field
