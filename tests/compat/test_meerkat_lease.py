"""``callback/lease_provider/*`` through the SDK's dispatcher, against the real LeaseService
on etcd: the JSON the gateway receives, and ``renew_leases`` atomic from the caller's view."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from compat_support import WAIT, Suite, dispatcher_for

from mobkit.compat.meerkat import MeerkatProviders
from mobkit.core.errors import BackendUnavailable, InvalidArgument, InvalidIdentity, MobKitError
from mobkit.etcd.process import free_ports
from mobkit.lease.client import GrpcLeaseProvider

ACQUIRE = "callback/lease_provider/acquire_leases"
RENEW = "callback/lease_provider/renew_leases"
RELEASE = "callback/lease_provider/release_leases"


def acquired(identity: str, token: int, ttl: int = 10_000) -> dict[str, Any]:
    return {"result": "acquired", "identity": identity, "fencing_token": token, "ttl": ttl}


def grant(answer: dict[str, Any]) -> dict[str, Any]:
    """A grant as the gateway sends it back: the acquired/renewed entry minus ``result``."""
    return {k: answer[k] for k in ("identity", "fencing_token", "ttl")}


async def holders(suite: Suite) -> dict[str, tuple[str, int]]:
    leases, _ = await GrpcLeaseProvider(suite.channel).list_leases(page_size=1000)
    return {lease.identity: (lease.holder, lease.fencing_token) for lease in leases}


async def test_acquire_renew_release_speak_the_sdk_json(suite: Suite) -> None:
    got = await suite.call(
        ACQUIRE, {"identities": ["coordinator", "worker-1"], "runtime_instance": "pod-a"}
    )
    token = got["coordinator"]["fencing_token"]
    assert isinstance(token, int) and token > 0
    assert got == {
        "coordinator": acquired("coordinator", token),
        "worker-1": acquired("worker-1", got["worker-1"]["fencing_token"]),
    }

    # Another runtime instance is told who holds it; the holder gets its grant again.
    assert await suite.call(
        ACQUIRE, {"identities": ["coordinator"], "runtime_instance": "pod-b"}
    ) == {"coordinator": {"result": "already_held", "identity": "coordinator", "holder": "pod-a"}}
    again = await suite.call(ACQUIRE, {"identities": ["coordinator"], "runtime_instance": "pod-a"})
    assert again == {"coordinator": acquired("coordinator", token)}

    grants = [grant(got["coordinator"]), grant(got["worker-1"])]
    assert await suite.call(RENEW, {"grants": grants}) == {
        "coordinator": {"result": "renewed", **grants[0]},
        "worker-1": {"result": "renewed", **grants[1]},
    }

    assert await suite.call(RELEASE, {"grants": grants[:1]}) is None
    taken = await suite.call(ACQUIRE, {"identities": ["coordinator"], "runtime_instance": "pod-b"})
    assert taken["coordinator"]["result"] == "acquired"
    assert taken["coordinator"]["fencing_token"] > token  # a new holder's token is larger
    assert await suite.call(RENEW, {"grants": grants}) == {
        "coordinator": {"result": "lost", "identity": "coordinator"},
        "worker-1": {"result": "renewed", **grants[1]},
    }
    assert await suite.call(RELEASE, {"grants": grants[:1]}) is None  # stale: a no-op
    assert (await holders(suite))["coordinator"] == ("pod-b", taken["coordinator"]["fencing_token"])


BAD_BATCHES = [
    pytest.param(lambda g: [g[0], g[1], g[0]], InvalidArgument, id="duplicate"),
    pytest.param(
        lambda g: [g[0], {**g[1], "identity": "bad id"}], InvalidIdentity, id="bad-identity"
    ),
    pytest.param(lambda g: [g[0], {**g[1], "fencing_token": 0}], InvalidArgument, id="zero-token"),
    pytest.param(lambda g: [{**g[0], "ttl": -1}, g[1]], InvalidArgument, id="negative-ttl"),
]


@pytest.mark.parametrize(("batch", "error"), BAD_BATCHES)
async def test_a_renew_that_raises_leaves_every_grant_unchanged(
    suite: Suite, batch: Any, error: type[MobKitError]
) -> None:
    got = await suite.call(ACQUIRE, {"identities": ["w1", "w2"], "runtime_instance": "pod-a"})
    grants = [grant(got["w1"]), grant(got["w2"])]
    before = await holders(suite)

    with pytest.raises(error) as raised:
        await suite.call(RENEW, {"grants": batch(grants)})
    assert str(raised.value).startswith(f"{error.reason.lower()}: ")  # what the gateway parses

    assert await holders(suite) == before
    assert await suite.call(ACQUIRE, {"identities": ["w1", "w2"], "runtime_instance": "pod-b"}) == {
        i: {"result": "already_held", "identity": i, "holder": "pod-a"} for i in ("w1", "w2")
    }
    assert await suite.call(RENEW, {"grants": grants}) == {
        g["identity"]: {"result": "renewed", **g} for g in grants
    }


async def test_a_renew_that_cannot_reach_the_service_raises_and_changes_nothing(
    suite: Suite,
) -> None:
    got = await suite.call(ACQUIRE, {"identities": ["w1", "w2"], "runtime_instance": "pod-a"})
    grants = [grant(got["w1"]), grant(got["w2"])]
    before = await holders(suite)

    async with grpc.aio.insecure_channel(f"127.0.0.1:{free_ports(1)[0]}") as nowhere:
        cut_off = dispatcher_for(MeerkatProviders.from_channel(nowhere, timeout=WAIT))
        with pytest.raises(BackendUnavailable, match=r"^backend_unavailable: "):
            await cut_off.handle_callback(RENEW, {"grants": grants})

    assert await holders(suite) == before
    assert await suite.call(RENEW, {"grants": grants}) == {
        g["identity"]: {"result": "renewed", **g} for g in grants
    }
