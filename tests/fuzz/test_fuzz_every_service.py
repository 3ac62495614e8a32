"""10,000 malformed requests at every unary RPC of every service: no crash, no state
change, every answer a proper status with one ErrorInfo.

Requests are bad on purpose: raw garbage, invalid UTF-8 in a string field, or a
structurally valid message with random values and at least one invalid identity (too
long, whitespace, slashes, control or format characters) or one number beyond what etcd
and SQLite hold (a uint64 above 2^63-1, a Duration beyond its range).
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from mobkit.gen.lease.v1 import lease_service_pb2 as lease_svc
from mobkit.gen.lease.v1 import lease_service_pb2_grpc as lease_grpc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as orch_svc
from mobkit.server.catalog import CATALOG
from mobkit.server.validation import IDENTITY_FIELDS, carries_identities
from mobkit.testing.fleet import wait_fleet
from mobkit.testing.servers import running_services
from mobkit.testing.suite import stub, write_roster

TOTAL = 10_000
TEAM = ["f1", "f2", "f3"]
# Codes a bad request may get; UNKNOWN / INTERNAL / UNIMPLEMENTED would be a bug.
ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.DATA_LOSS,
}
BAD_IDENTITIES = [
    "",
    " ",
    "a b",
    "x/y",
    "\t",
    "tab\there",
    "/",
    "new\nline",
    "x" * 10_000,
    "é" * 200,
    "nul\x00",
    "bel\x07",
    "esc\x1b",
    "del\x7f",
    "zw\u200bsp",
    "\ufeffbom",
    "rtl\u202e",
]
HUGE = [2**63, 2**63 + 1, 2**64 - 1]


def _text(rng: random.Random) -> str:
    kind = rng.randrange(5)
    if kind == 0:
        return ""
    if kind == 1:
        return "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 40)))
    if kind == 2:
        return "z" * rng.choice([1, 100, 10_000, 200_000])
    if kind == 3:
        return rng.choice(BAD_IDENTITIES)
    return f"id-{rng.randrange(1000)}"


def _fill(msg: Message, rng: random.Random, depth: int = 0) -> None:
    desc: Descriptor = msg.DESCRIPTOR
    for f in desc.fields:
        if rng.random() < 0.4:
            continue
        count = rng.randrange(0, 4) if f.is_repeated else 1
        for _ in range(count):
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                if depth > 3 or (f.message_type and f.message_type.GetOptions().map_entry):
                    continue
                child = getattr(msg, f.name).add() if f.is_repeated else getattr(msg, f.name)
                if f.message_type.full_name == "google.protobuf.Struct":
                    child.update({"k": rng.random()})
                elif f.message_type.full_name == "google.protobuf.Duration":
                    child.seconds = rng.choice([0, 1, 10**9, -5, 2**53 + 1, 2**63 - 1])
                    child.nanos = rng.choice([0, -1, 999_999_999, 2**31 - 1])
                else:
                    _fill(child, rng, depth + 1)
                continue
            value: Any
            if f.type == FieldDescriptor.TYPE_STRING:
                value = _text(rng)
            elif f.type == FieldDescriptor.TYPE_BYTES:
                value = rng.randbytes(rng.choice([0, 10, 5000, 3_000_000]))
            elif f.type == FieldDescriptor.TYPE_BOOL:
                value = rng.random() < 0.5
            elif f.type == FieldDescriptor.TYPE_ENUM:
                value = rng.choice([v.number for v in f.enum_type.values])
            elif f.type in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_UINT32):
                value = (
                    rng.choice([0, 1, 2**32 - 1])
                    if f.type == FieldDescriptor.TYPE_UINT32
                    else rng.choice([0, 1, 2**63, 2**64 - 1])
                )
            elif f.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64):
                value = rng.choice([-1, 0, 7, 2**31 - 1])
            elif f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
                value = rng.choice([-1.0, 0.0, 1e300])
            else:
                continue
            if f.is_repeated:
                getattr(msg, f.name).append(value)
            else:
                setattr(msg, f.name, value)


def _poison(msg: Message, rng: random.Random) -> bool:
    """Put a bad identity into the first identity field (recursing). True if done."""
    for f in msg.DESCRIPTOR.fields:
        if f.type == FieldDescriptor.TYPE_STRING and f.name in IDENTITY_FIELDS:
            bad = rng.choice(BAD_IDENTITIES)
            if f.is_repeated:
                getattr(msg, f.name).append(bad)
            else:
                setattr(msg, f.name, bad)
            return True
        if f.type != FieldDescriptor.TYPE_MESSAGE or not carries_identities(f.message_type):
            continue
        child = getattr(msg, f.name).add() if f.is_repeated else getattr(msg, f.name)
        if _poison(child, rng):
            return True
    return False


def _overflow(msg: Message, rng: random.Random, depth: int = 0) -> bool:
    """Put a number beyond int64 into the first uint64 field (recursing). True if done."""
    for f in msg.DESCRIPTOR.fields:
        if f.type == FieldDescriptor.TYPE_UINT64:
            value = rng.choice(HUGE)
            if f.is_repeated:
                getattr(msg, f.name).append(value)
            else:
                setattr(msg, f.name, value)
            return True
        if f.type == FieldDescriptor.TYPE_MESSAGE and depth < 3:
            if f.message_type.full_name.startswith("google.protobuf.") or (
                f.message_type.GetOptions().map_entry
            ):
                continue
            child = getattr(msg, f.name).add() if f.is_repeated else getattr(msg, f.name)
            if _overflow(child, rng, depth + 1):
                return True
    return False


def bad_request(desc: Descriptor, rng: random.Random) -> bytes:
    """Bytes that must be refused: garbage, invalid UTF-8, or a poisoned message."""
    kind = rng.randrange(4)
    string_fields = [f for f in desc.fields if f.type == FieldDescriptor.TYPE_STRING]
    if kind == 1 and string_fields:
        f = rng.choice(string_fields)
        payload = b"\xff\xfe\xc3(" + rng.randbytes(rng.randrange(0, 8))
        tag = (f.number << 3) | 2
        return bytes([tag]) + bytes([len(payload)]) + payload if f.number < 16 else b"\xff"
    msg = message_factory.GetMessageClass(desc)()
    _fill(msg, rng)
    if kind == 2 and _poison(msg, rng):
        return msg.SerializeToString()
    if kind == 3 and _overflow(msg, rng):
        if rng.random() < 0.5:  # beside a bad identity: refused whichever is seen first
            _poison(msg, rng)
        return msg.SerializeToString()
    # Garbage: a truncated varint / bogus wire type is never a valid message.
    return b"\x0a\xff\xff\xff\xff\xff" + rng.randbytes(rng.randrange(0, 64))


async def state_of(channel: grpc.aio.Channel) -> tuple[Any, ...]:
    leases = await lease_grpc.LeaseServiceStub(channel).ListLeases(
        lease_svc.ListLeasesRequest(page_size=1000), timeout=10
    )
    statuses = await stub(channel).ListIdentityStatuses(
        orch_svc.ListIdentityStatusesRequest(), timeout=10
    )
    return (
        sorted((x.identity, x.fencing_token, x.holder) for x in leases.leases),
        sorted(
            (s.identity, s.state, s.session_id, s.checkpoint_version, s.generation)
            for s in statuses.statuses
        ),
    )


@pytest.mark.timeout(600)
async def test_ten_thousand_bad_requests(tmp_path: Path, etcd_session: Any) -> None:
    roster = write_roster(tmp_path / "roster.toml", TEAM)
    async with running_services(
        ["all"],
        etcd_endpoints=[etcd_session.endpoint],
        etcd_prefix=f"/fuzz-{uuid.uuid4().hex[:8]}",
        roster=str(roster),
        data_dir=str(tmp_path),
        continuity_backend="sqlite",
    ) as (_server, channel, _):
        await wait_fleet(channel, len(TEAM), owners=1, timeout=30)
        before = await state_of(channel)
        pool = descriptor_pool.Default()
        rpcs = []
        for spec in CATALOG.values():
            service = pool.FindServiceByName(spec.full_name)
            for m in service.methods:
                if not m.server_streaming and not m.client_streaming:
                    rpcs.append((f"/{spec.full_name}/{m.name}", m))
        rng = random.Random(20261122)
        codes: dict[str, int] = {}
        for i in range(TOTAL):
            path, method = rpcs[i % len(rpcs)]
            call = channel.unary_unary(path)  # raw bytes in and out
            payload = bad_request(method.input_type, rng)
            try:
                await call(payload, timeout=10)
                raise AssertionError(f"{path} accepted a bad request #{i}: {payload[:40]!r}")
            except grpc.aio.AioRpcError as err:
                assert err.code() in ALLOWED, (path, err.code(), err.details(), payload[:60])
                status = rpc_status.from_call(err)
                assert status is not None, (path, err.code(), err.details())
                infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
                assert len(infos) == 1, (path, err.details())
                codes[err.code().name] = codes.get(err.code().name, 0) + 1
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        assert await state_of(channel) == before
        assert sum(codes.values()) == TOTAL
