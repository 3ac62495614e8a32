"""Every numeric field of every RPC at the edges: 0, -1, 2^31, 2^53+1, 2^63-1, 2^63 and
2^64-1 (API.md "Input bounds").

Each case runs against the whole suite on a real etcd, with the continuity store on
etcd and on SQLite. It expects the documented answer: INVALID_ARGUMENT naming the field
(never INTERNAL), another documented reason, or success. After every refusal the stored
state (read straight from etcd, or from the SQLite file) is what it was before. A value
the field's wire type cannot hold (-1 in a uint64, 2^31 in an int32) cannot be sent at
all: the test checks the client's encoder refuses it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message

from mobkit.etcd.client import EtcdClient
from mobkit.etcd.ops import prefix_end
from mobkit.gen.continuity.v1 import continuity_pb2 as cpb
from mobkit.gen.continuity.v1 import continuity_service_pb2 as csvc
from mobkit.gen.continuity.v1 import continuity_service_pb2_grpc as cgrpc
from mobkit.gen.flows.v1 import flows_service_pb2 as fsvc
from mobkit.gen.flows.v1 import flows_service_pb2_grpc as fgrpc
from mobkit.gen.lease.v1 import lease_service_pb2 as lsvc
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as lgrpc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as osvc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2_grpc as ogrpc
from mobkit.gen.topology.v1 import topology_service_pb2 as tsvc
from mobkit.gen.topology.v1 import topology_service_pb2_grpc as tgrpc
from mobkit.testing.servers import running_services
from mobkit.testing.suite import reason

VALUES = [0, -1, 2**31 - 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1]
INT64_MAX = 2**63 - 1
OK = "OK"
INVALID = "INVALID_ARGUMENT"


def _fits(kind: str, value: int) -> bool:
    lo, hi = {
        "uint64": (0, 2**64 - 1),
        "int64": (-(2**63), 2**63 - 1),
        "int32": (-(2**31), 2**31 - 1),
    }[kind]
    return lo <= value <= hi


@dataclass
class World:
    """The running suite and one freshly leased identity with a record and snapshot."""

    channel: grpc.aio.Channel
    identity: str
    token: int
    backend: str  # the continuity store's

    @property
    def leases(self) -> lgrpc.LeaseServiceStub:
        return lgrpc.LeaseServiceStub(self.channel)

    @property
    def continuity(self) -> cgrpc.ContinuityStoreServiceStub:
        return cgrpc.ContinuityStoreServiceStub(self.channel)

    @property
    def orchestrator(self) -> ogrpc.OrchestratorServiceStub:
        return ogrpc.OrchestratorServiceStub(self.channel)

    @property
    def flows(self) -> fgrpc.FlowServiceStub:
        return fgrpc.FlowServiceStub(self.channel)


@dataclass(frozen=True)
class Case:
    rpc: str
    field: str  # dotted path as the error names it (repeated fields at index 0)
    kind: str
    build: Callable[[World], tuple[Callable[..., Any], Message]]
    expect: Callable[[int, World], str]
    """The answer for a value the wire can carry: OK or an ErrorInfo reason."""


def _snapshot(world: World, version: int = 2, **over: int) -> tuple[Callable[..., Any], Message]:
    fields = {"generation": 1, "checkpoint_version": version, "fencing_token": world.token}
    fields.update(over)
    request = csvc.SaveSessionSnapshotRequest(
        identity=world.identity,
        session_id=f"s-{world.identity}",
        snapshot=cpb.SessionSnapshot(data=b"next"),
        **fields,
    )
    return world.continuity.SaveSessionSnapshot, request


def _record(world: World) -> tuple[Callable[..., Any], Message]:
    request = csvc.UpsertContinuityRecordRequest(
        record=_record_msg(world.identity), fencing_token=world.token
    )
    return world.continuity.UpsertContinuityRecord, request


def _record_msg(identity: str, generation: int = 1, version: int = 1) -> cpb.ContinuityRecord:
    return cpb.ContinuityRecord(
        identity=identity,
        agent_runtime_id=f"rt-{identity}",
        session_id=f"s-{identity}",
        generation=generation,
        checkpoint_version=version,
    )


def _grant(world: World) -> Any:
    from mobkit.gen.lease.v1 import lease_pb2

    return lease_pb2.LeaseGrant(identity=world.identity, fencing_token=world.token)


def _token_answer(right: str, wrong: str) -> Callable[[int, World], str]:
    """Answers for a fencing token: 0 is malformed, the holder's own is ``right``,
    another in range is ``wrong``, beyond int64 is malformed. A continuity write on
    SQLite, which cannot see the leases, takes a token above the highest it has seen
    as a newer owner's (API.md: fencing by highest token); etcd compares the lease key."""

    def expect(value: int, world: World) -> str:
        if value == 0 or value > INT64_MAX:
            return INVALID
        if value == world.token:
            return right
        continuity = wrong == "STALE_FENCING_TOKEN"
        if continuity and world.backend == "sqlite" and value > world.token:
            return OK
        return wrong

    return expect


def _page_size(value: int, _: World) -> str:
    return INVALID if value < 0 else OK


def _batched(world: World) -> tuple[Callable[..., Any], Message]:
    _, save = _snapshot(world)
    request = csvc.SaveSessionSnapshotsRequest(saves=[save])
    return world.continuity.SaveSessionSnapshots, request


def _in_range_or(answer: str) -> Callable[[int, World], str]:
    """INVALID_ARGUMENT past int64 (checked before the call runs), else ``answer``."""
    return lambda value, _: INVALID if value > INT64_MAX else answer


def _cursor(value: int, _: World) -> str:
    return INVALID if value > INT64_MAX else (OK if value == 0 else "STALE_EVENT_CURSOR")


CASES = [
    # A snapshot's generation must be the record's (1); its version must pass the stored 1.
    Case(
        "SaveSessionSnapshot",
        "generation",
        "uint64",
        lambda w: _snapshot(w),
        lambda v, w: INVALID if v > INT64_MAX else (OK if v == 1 else "GENERATION_MISMATCH"),
    ),
    Case(
        "SaveSessionSnapshot",
        "checkpoint_version",
        "uint64",
        lambda w: _snapshot(w),
        lambda v, w: (
            INVALID if v == 0 or v > INT64_MAX else (OK if v > 1 else "STALE_CHECKPOINT_VERSION")
        ),
    ),
    Case(
        "SaveSessionSnapshot",
        "fencing_token",
        "uint64",
        lambda w: _snapshot(w),
        _token_answer(OK, "STALE_FENCING_TOKEN"),
    ),
    Case(
        "UpsertContinuityRecord",
        "record.generation",
        "uint64",
        _record,
        # A lower generation than the record's (1) is refused; a higher one is a reset.
        lambda v, w: INVALID if v > INT64_MAX else (OK if v >= 1 else "GENERATION_MISMATCH"),
    ),
    Case(
        "UpsertContinuityRecord",
        "record.checkpoint_version",
        "uint64",
        _record,
        lambda v, w: INVALID if v > INT64_MAX else (OK if v >= 1 else "STALE_CHECKPOINT_VERSION"),
    ),
    Case(
        "UpsertContinuityRecord",
        "fencing_token",
        "uint64",
        _record,
        _token_answer(OK, "STALE_FENCING_TOKEN"),
    ),
    Case(
        "DeleteContinuityRecord",
        "fencing_token",
        "uint64",
        lambda w: (
            w.continuity.DeleteContinuityRecord,
            csvc.DeleteContinuityRecordRequest(identity=w.identity, fencing_token=w.token),
        ),
        _token_answer(OK, "STALE_FENCING_TOKEN"),
    ),
    Case(
        "AcquireLeases",
        "ttl.seconds",
        "int64",
        lambda w: (
            w.leases.AcquireLeases,
            lsvc.AcquireLeasesRequest(identities=[f"{w.identity}-2"], runtime_instance="t"),
        ),
        lambda v, w: OK if 1 <= v <= 3600 else INVALID,
    ),
    Case(
        "AcquireLeases",
        "ttl.nanos",
        "int32",
        lambda w: (
            w.leases.AcquireLeases,
            lsvc.AcquireLeasesRequest(
                identities=[f"{w.identity}-2"], runtime_instance="t", ttl={"seconds": 10}
            ),
        ),
        lambda v, w: OK if 0 <= v <= 999_999_999 else INVALID,
    ),
    Case(
        "RenewLeases",
        "grants[0].fencing_token",
        "uint64",
        lambda w: (w.leases.RenewLeases, lsvc.RenewLeasesRequest(grants=[_grant(w)])),
        _token_answer(OK, OK),  # a stale token answers `lost`, in the reply
    ),
    Case(
        "RenewLeases",
        "grants[0].ttl.seconds",
        "int64",
        lambda w: (w.leases.RenewLeases, lsvc.RenewLeasesRequest(grants=[_grant(w)])),
        lambda v, w: OK if abs(v) <= 315_576_000_000 else INVALID,  # ignored when valid
    ),
    Case(
        "ReleaseLeases",
        "grants[0].fencing_token",
        "uint64",
        lambda w: (w.leases.ReleaseLeases, lsvc.ReleaseLeasesRequest(grants=[_grant(w)])),
        _token_answer(OK, OK),  # a stale token is a no-op
    ),
    Case(
        "ListLeases",
        "page_size",
        "int32",
        lambda w: (w.leases.ListLeases, lsvc.ListLeasesRequest()),
        _page_size,
    ),
    Case(
        "ListIdentityStatuses",
        "page_size",
        "int32",
        lambda w: (w.orchestrator.ListIdentityStatuses, osvc.ListIdentityStatusesRequest()),
        _page_size,
    ),
    Case(
        "ListEvents",
        "page_size",
        "int32",
        lambda w: (w.orchestrator.ListEvents, osvc.ListEventsRequest()),
        _page_size,
    ),
    Case(
        "ListEvents",
        "after_seq",
        "uint64",
        lambda w: (w.orchestrator.ListEvents, osvc.ListEventsRequest()),
        _cursor,
    ),
    Case(
        "WatchEvents",
        "after_seq",
        "uint64",
        lambda w: (w.orchestrator.WatchEvents, osvc.WatchEventsRequest()),
        _cursor,
    ),
    Case(
        "GetTopology",
        "page_size",
        "int32",
        lambda w: (w.orchestrator.GetTopology, osvc.GetTopologyRequest()),
        _page_size,
    ),
    Case(
        "ListModules",
        "page_size",
        "int32",
        lambda w: (w.orchestrator.ListModules, osvc.ListModulesRequest()),
        _page_size,
    ),
    # A batch's saves each get their own outcome in the reply (a stale token is one);
    # only a value the store's integers cannot hold fails the whole call.
    *(
        Case(
            "SaveSessionSnapshots",
            f"saves[0].{name}",
            "uint64",
            _batched,
            _in_range_or(OK),
        )
        for name in ("generation", "checkpoint_version", "fencing_token")
    ),
    Case(
        "WatchTurn",
        "after_seq",
        "uint64",
        lambda w: (w.orchestrator.WatchTurn, osvc.WatchTurnRequest(turn_id="turn-none")),
        _in_range_or("TURN_NOT_FOUND"),
    ),
    Case(
        "ListFlows",
        "page_size",
        "int32",
        lambda w: (w.flows.ListFlows, fsvc.ListFlowsRequest()),
        lambda v, _: INVALID if v < 0 else "ROSTER_INVALID",  # this suite has no roster
    ),
    Case(
        "ListRuns",
        "page_size",
        "int32",
        lambda w: (w.flows.ListRuns, fsvc.ListRunsRequest()),
        _page_size,
    ),
    Case(
        "WatchRun",
        "after_seq",
        "uint64",
        lambda w: (w.flows.WatchRun, fsvc.WatchRunRequest(run_id="no-run")),
        _in_range_or("RUN_NOT_FOUND"),
    ),
    Case(
        "StartRun",
        "expected_roster_revision",
        "uint64",
        lambda w: (w.flows.StartRun, fsvc.StartRunRequest(flow_id="no-flow")),
        _in_range_or("ROSTER_INVALID"),  # this suite has no roster to find flows in
    ),
    Case(
        "ComputeEdges",
        "page_size",
        "int32",
        lambda w: (tgrpc.TopologyServiceStub(w.channel).ComputeEdges, tsvc.ComputeEdgesRequest()),
        _page_size,
    ),
]


def test_the_table_covers_every_numeric_request_field() -> None:
    """A new numeric field in a request must get a row here."""
    from google.protobuf.descriptor import FieldDescriptor as F

    from mobkit.server.catalog import EVERY_SERVICE

    numeric = {
        F.TYPE_INT32,
        F.TYPE_INT64,
        F.TYPE_UINT32,
        F.TYPE_UINT64,
        F.TYPE_SINT64,
        F.TYPE_FIXED64,
        F.TYPE_DOUBLE,
        F.TYPE_FLOAT,
    }
    skip = {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}

    def walk(desc: Any, path: str) -> set[str]:
        found: set[str] = set()
        for f in desc.fields:
            name = f"{path}{f.name}{'[0]' if f.is_repeated and f.type == F.TYPE_MESSAGE else ''}"
            if f.type in numeric:
                found.add(name)
            elif f.type == F.TYPE_MESSAGE and f.message_type.full_name not in skip:
                found |= walk(f.message_type, name + ".")
        return found

    from google.protobuf import descriptor_pool

    wanted: set[tuple[str, str]] = set()
    for spec in EVERY_SERVICE:
        spec.grpc_module()  # registers the service's descriptors
        service = descriptor_pool.Default().FindServiceByName(spec.full_name)
        for method in service.methods:
            wanted |= {(method.name, f) for f in walk(method.input_type, "")}
    covered = {(c.rpc, c.field) for c in CASES}
    # A renewal's and a release's grant TTLs are ignored; one of them stands for both.
    covered |= {
        ("RenewLeases", "grants[0].ttl.nanos"),
        ("ReleaseLeases", "grants[0].ttl.seconds"),
        ("ReleaseLeases", "grants[0].ttl.nanos"),
        # Replica-to-replica and bidirectional: covered over their whole ranges by
        # tests/orchestrator/test_forward_link.py (every call id and deadline).
        ("ForwardStream", "call_id"),
        ("ForwardStream", "timeout_ms"),
    }
    assert wanted <= covered, sorted(wanted - covered)


def _set(msg: Message, path: str, value: int) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        msg = getattr(msg, part[:-3])[0] if part.endswith("[0]") else getattr(msg, part)
    setattr(msg, leaf, value)


@pytest.fixture(params=["etcd", "sqlite"])
async def suite(
    request: pytest.FixtureRequest, etcd_session: Any, tmp_path: Path
) -> AsyncIterator[tuple[grpc.aio.Channel, Callable[[], Any]]]:
    prefix = f"/bounds-{tmp_path.name}"
    async with (
        running_services(
            ["all"],
            etcd_endpoints=[etcd_session.endpoint],
            etcd_prefix=prefix,
            data_dir=str(tmp_path),
            continuity_backend=request.param,
        ) as (_, channel, settings),
        await EtcdClient.connect([etcd_session.endpoint], timeout=5.0) as etcd,
    ):

        async def stored() -> Any:
            """Leases, continuity keys and SQLite rows; not the suite's own upkeep
            (replica registrations, events), which moves by itself."""
            keep = (f"{prefix}/leases/", f"{prefix}/continuity/")
            reply = await etcd.range(prefix.encode(), prefix_end(prefix.encode()))
            kvs = sorted(
                (kv.key, kv.value, kv.create_revision, kv.mod_revision)
                for kv in reply.kvs
                if kv.key.decode(errors="replace").startswith(keep)
            )
            rows: list[Any] = []
            if request.param == "sqlite":
                with sqlite3.connect(settings.resolved_sqlite_path()) as db:
                    for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                        rows.append((table, sorted(db.execute(f"SELECT * FROM {table}"))))
            return kvs, rows

        yield channel, stored, request.param


async def _world(channel: grpc.aio.Channel, identity: str, backend: str) -> World:
    leases = lgrpc.LeaseServiceStub(channel)
    reply = await leases.AcquireLeases(
        lsvc.AcquireLeasesRequest(identities=[identity], runtime_instance="t"), timeout=5
    )
    world = World(channel, identity, reply.results[0].acquired.fencing_token, backend)
    await world.continuity.UpsertContinuityRecord(
        csvc.UpsertContinuityRecordRequest(
            record=_record_msg(identity, version=0), fencing_token=world.token
        ),
        timeout=5,
    )
    call, save = _snapshot(world, version=1)
    await call(save, timeout=5)
    return world


async def _answer(call: Callable[..., Any], request: Message) -> tuple[str, Any]:
    try:
        result = call(request, timeout=5)
        if hasattr(result, "__aiter__"):
            # A server stream refuses bad input at once; an accepted one is a watch that
            # waits for events: it ends by the deadline, with no ErrorInfo.
            try:
                async for _ in result:
                    break
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise
            result.cancel()
            return OK, None
        return OK, await result
    except grpc.aio.AioRpcError as err:
        return reason(err), err


@pytest.mark.parametrize("case", CASES, ids=[f"{c.rpc}.{c.field}" for c in CASES])
async def test_numeric_edges(suite: Any, case: Case) -> None:
    channel, stored, backend = suite
    slug = case.field.replace(".", "-").replace("[0]", "")
    for n, value in enumerate(VALUES):
        world = await _world(channel, f"n{n}-{case.rpc.lower()}-{slug}", backend)
        call, request = case.build(world)
        if not _fits(case.kind, value):
            with pytest.raises((ValueError, TypeError)):
                _set(request, case.field, value)
            continue
        _set(request, case.field, value)
        before = await stored()
        answer, err = await _answer(call, request)
        expected = case.expect(value, world)
        assert answer == expected, (case.field, value, err)
        if answer == INVALID:
            info = dict(_error_info(err).metadata)
            assert _names(info["field"], case.field), (value, info)
        if answer != OK:
            assert await stored() == before, (case.field, value)


def _names(named: str, path: str) -> bool:
    """Whether the error's ``field`` names ``path`` or a message on it (``ttl`` for
    ``ttl.seconds``, ``fencing_token`` for ``grants[0].fencing_token``)."""
    strip = lambda p: [part.split("[")[0] for part in p.split(".")]  # noqa: E731
    want, got = strip(path), strip(named)
    return any(want[i : i + len(got)] == got for i in range(len(want)))


def _error_info(err: grpc.aio.AioRpcError) -> Any:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(err)
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    return info
