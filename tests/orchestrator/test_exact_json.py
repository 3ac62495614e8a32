"""Any JSON value, exactly, through the whole suite on real gRPC servers.

A spec's context is written into a roster document in etcd; from there it goes
through the RosterService, the TopologyService (ComputeEdges), the customizer
(it becomes the draft's app context), the runtime (the notebook answers its app
context as structured output) and the orchestrator (the Send receipt, and the
receipt replayed from SQLite), then the identity's status. Each leg is also read
through the Python client. ``same`` tells ``3`` from ``3.0``, so a value that
went through a double anywhere fails. JSON text that is not JSON is refused with
INVALID_ARGUMENT naming its field.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from json_support import json_values, same

from mobkit.client import MobKit
from mobkit.client._loop import LoopThread
from mobkit.core.errors import IdentityNotFound
from mobkit.core.identity import AgentIdentity
from mobkit.core.types import (
    AgentBuildContext,
    AgentBuildDraft,
    DispatchInput,
    IdentityLifecycleState,
    ManagedPeerEdge,
    TopologyContext,
)
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.process import EtcdProcess
from mobkit.gen.customizer.v1 import (
    customizer_pb2,
    customizer_service_pb2,
    customizer_service_pb2_grpc,
)
from mobkit.gen.roster.v1 import roster_pb2
from mobkit.gen.topology.v1 import topology_pb2, topology_service_pb2, topology_service_pb2_grpc
from mobkit.roster.etcd_source import put_roster_document, roster_key
from mobkit.server.app import MobKitServer
from mobkit.server.config import Settings
from mobkit.server.host import start_services
from mobkit.server.resources import Resources

pytestmark = pytest.mark.timeout(300)

WAIT = 30.0
"""Upper bound for a roster edit to reach the status (seconds)."""

ANCHOR = "anchor"
"""A second identity, so ComputeEdges has a pair (full mesh) whatever the value."""
ANCHOR_CONTEXT: Any = ["anchor", 2**64 + 1]

PROVIDERS = ["roster", "topology", "customizer", "runtime"]


@dataclass
class Stack:
    mk: MobKit
    put_roster: Any  # (identity, context) -> None
    providers: str  # HOST:PORT of the provider services


def roster_document(identity: str, context: Any) -> str:
    agents: list[dict[str, Any]] = [
        {"identity": ANCHOR, "profile": "notebook", "context": ANCHOR_CONTEXT}
    ]
    if identity:
        agents.append({"identity": identity, "profile": "notebook", "context": context})
    # The document nests 3 levels above a context: not a value jsontext.encode takes.
    return json.dumps({"profiles": {"notebook": "notebook"}, "agents": agents})


@pytest.fixture(scope="module")
def stack(etcd_session: EtcdProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The providers on one server, the orchestrator on another talking to them over
    gRPC (its leases on etcd, its continuity in a SQLite file), both on a private loop."""
    loop = LoopThread("exact-json")
    prefix = f"/exact-{uuid.uuid4().hex[:8]}"
    sqlite = tmp_path_factory.mktemp("exact-json") / "continuity.sqlite3"
    started: list[tuple[MobKitServer, Resources]] = []

    async def start() -> tuple[EtcdClient, str, str]:
        etcd = await EtcdClient.connect([etcd_session.endpoint])
        await put_roster_document(etcd, roster_key(prefix), roster_document("", None))
        common: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "etcd_endpoints": [etcd_session.endpoint],
            "etcd_prefix": prefix,
            "log_level": "WARNING",
        }
        providers = await start_services(PROVIDERS, Settings(**common, roster="etcd").validate())
        started.append(providers)
        address = f"127.0.0.1:{providers[0].port}"
        orchestrator = await start_services(
            ["orchestrator"],
            Settings(
                **common,
                continuity_backend="sqlite",
                sqlite_path=str(sqlite),
                etcd_compaction_interval=0,
                **{f"{p}_addr": address for p in PROVIDERS},
            ).validate(),
        )
        started.append(orchestrator)
        return etcd, address, f"127.0.0.1:{orchestrator[0].port}"

    async def stop(etcd: EtcdClient | None) -> None:
        for server, resources in reversed(started):
            await server.stop(0)
            await resources.close()
        if etcd is not None:
            await etcd.close()

    etcd: EtcdClient | None = None
    try:
        etcd, providers_addr, orchestrator_addr = loop.run(start())
        client = etcd

        def put_roster(identity: str, context: Any) -> None:
            loop.run(
                put_roster_document(client, roster_key(prefix), roster_document(identity, context))
            )

        addresses = dict.fromkeys(PROVIDERS, providers_addr)
        with MobKit(orchestrator_addr, timeout=10, provider_addresses=addresses) as mk:
            yield Stack(mk, put_roster, providers_addr)
    finally:
        loop.run(stop(etcd))
        loop.close()


def wait_active(mk: MobKit, identity: str) -> None:
    deadline = time.monotonic() + WAIT
    state = None
    while state is not IdentityLifecycleState.ACTIVE:
        assert time.monotonic() < deadline, f"{identity} never became active ({state})"
        # IDENTITY_NOT_FOUND until the roster edit reaches the orchestrator.
        with contextlib.suppress(IdentityNotFound):
            state = mk.status(identity).state
        time.sleep(0.05)


_counter = iter(range(1_000_000))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(context=json_values)
def test_any_context_arrives_exactly_everywhere(stack: Stack, context: Any) -> None:
    mk = stack.mk
    identity = f"j{next(_counter)}"
    stack.put_roster(identity, context)
    wait_active(mk, identity)  # the orchestrator's own roster -> edges -> build -> session

    # roster: the spec as the RosterService serves it.
    specs = {s.identity: s for s in mk.providers.roster.roster()}
    spec = specs[identity]
    assert same(spec.context, context)
    assert same(specs[ANCHOR].context, ANCHOR_CONTEXT)

    # topology: the specs as ComputeEdges' context, whatever their contexts' types.
    edges = mk.providers.topology.compute_edges(
        [ANCHOR, identity], TopologyContext(roster=tuple(specs.values()))
    )
    assert edges == [ManagedPeerEdge.new(ANCHOR, identity)]

    # customizer: the spec's context becomes the draft's app context.
    build = AgentBuildContext(AgentIdentity(identity), active_peers=(AgentIdentity(ANCHOR),))
    draft = mk.providers.customizer.customize_build(build, spec, AgentBuildDraft())
    assert same(draft.app_context, context)

    # runtime: the notebook answers the app context it was built with.
    runtime = mk.providers.runtime
    info = runtime.create_session(identity, "notebook", draft)
    try:
        outcome = runtime.run_turn(info.session_id, DispatchInput("context"))
        assert same(outcome.structured_output, context)
    finally:
        runtime.close_session(info.session_id)

    # orchestrator: the session it built answers the same, and so does the receipt the
    # continuity store (SQLite) kept for the idempotency key.
    key = f"k-{identity}"
    receipt = mk.send(identity, "context", idempotency_key=key)
    assert same(receipt.structured_output, context)
    replay = mk.send(identity, "context", idempotency_key=key)
    assert replay.checkpoint_version == receipt.checkpoint_version  # no second turn
    assert same(replay.structured_output, context)

    # status: the identity serves, exactly once.
    status = mk.status(identity)
    assert status.state is IdentityLifecycleState.ACTIVE
    assert status.checkpoint_version == receipt.checkpoint_version


@pytest.mark.parametrize("context", ["a plain string", [1, "two", None], 2**64 + 1, False])
def test_a_string_or_list_context_does_not_fail_compute_edges(stack: Stack, context: Any) -> None:
    """One spec whose context is not an object once failed the whole ComputeEdges call."""
    mk = stack.mk
    identity = f"s{next(_counter)}"
    stack.put_roster(identity, context)
    wait_active(mk, identity)
    assert ManagedPeerEdge.new(ANCHOR, identity) in set(mk.topology())
    specs = mk.providers.roster.roster()
    edges = mk.providers.topology.compute_edges(
        [s.identity for s in specs], TopologyContext(roster=tuple(specs))
    )
    assert edges == [ManagedPeerEdge.new(ANCHOR, identity)]


def _error(call: Any) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.RpcError) as err:
        call()
    status = rpc_status.from_call(err.value)  # type: ignore[arg-type]
    assert status is not None and len(status.details) == 1
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return err.value.code(), info.reason, dict(info.metadata)  # type: ignore[attr-defined]


@pytest.mark.parametrize("text", ["{", "NaN", "[1,]", "1e400", "[" * 200 + "]" * 200])
def test_json_text_that_is_not_json_is_invalid_argument_naming_the_field(
    stack: Stack, text: str
) -> None:
    with grpc.insecure_channel(stack.providers) as channel:
        spec = roster_pb2.DurableAgentSpec(identity="x", profile="notebook", context_json=text)
        edges = topology_service_pb2.ComputeEdgesRequest(
            target_identities=["x"], context=topology_pb2.TopologyContext(roster=[spec])
        )
        compute = topology_service_pb2_grpc.TopologyServiceStub(channel).ComputeEdges
        code, reason, metadata = _error(lambda: compute(edges, timeout=10))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
        assert metadata["field"] == "context.roster[0].context_json"

        build = customizer_service_pb2.CustomizeBuildRequest(
            context=customizer_pb2.AgentBuildContext(identity="x"),
            spec=roster_pb2.DurableAgentSpec(identity="x", profile="notebook"),
            draft=customizer_pb2.AgentBuildDraft(app_context_json=text),
        )
        customize = customizer_service_pb2_grpc.AgentCustomizerServiceStub(channel).CustomizeBuild
        code, reason, metadata = _error(lambda: customize(build, timeout=10))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT")
        assert metadata["field"] == "draft.app_context_json"
