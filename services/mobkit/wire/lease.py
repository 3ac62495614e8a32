"""Proto <-> domain conversion for ``mobkit.lease.v1`` messages.

Conversion only: identities are validated at the server edge (interceptor) and by
the providers, not here.
"""

from __future__ import annotations

from datetime import timedelta

from google.protobuf import duration_pb2

from mobkit.core.errors import InvalidArgument
from mobkit.core.identity import AgentIdentity
from mobkit.core.types import (
    Acquired,
    AlreadyHeld,
    LeaseAcquireResult,
    LeaseGrant,
    LeaseInfo,
    LeaseRenewResult,
    Lost,
    Renewed,
)
from mobkit.gen.lease.v1 import lease_pb2
from mobkit.lease.domain import Lease


def duration_to_proto(value: timedelta) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromTimedelta(value)
    return out


def duration_from_proto(value: duration_pb2.Duration) -> timedelta:
    return value.ToTimedelta()


# -- grants ------------------------------------------------------------------------------


def grant_to_proto(grant: LeaseGrant) -> lease_pb2.LeaseGrant:
    return lease_pb2.LeaseGrant(
        identity=grant.identity,
        fencing_token=grant.fencing_token,
        ttl=duration_to_proto(grant.ttl),
    )


def grant_from_proto(msg: lease_pb2.LeaseGrant) -> LeaseGrant:
    return LeaseGrant(AgentIdentity(msg.identity), msg.fencing_token, duration_from_proto(msg.ttl))


# -- results -----------------------------------------------------------------------------


def acquire_result_to_proto(result: LeaseAcquireResult) -> lease_pb2.LeaseAcquireResult:
    if isinstance(result, Acquired):
        return lease_pb2.LeaseAcquireResult(acquired=grant_to_proto(result.grant))
    return lease_pb2.LeaseAcquireResult(
        already_held=lease_pb2.LeaseAcquireResult.AlreadyHeld(
            identity=result.identity, holder=result.holder
        )
    )


def acquire_result_from_proto(msg: lease_pb2.LeaseAcquireResult) -> LeaseAcquireResult:
    case = msg.WhichOneof("result")
    if case == "acquired":
        return Acquired(grant_from_proto(msg.acquired))
    if case == "already_held":
        return AlreadyHeld(AgentIdentity(msg.already_held.identity), msg.already_held.holder)
    raise InvalidArgument("result", "LeaseAcquireResult has no case set")


def renew_result_to_proto(result: LeaseRenewResult) -> lease_pb2.LeaseRenewResult:
    if isinstance(result, Renewed):
        return lease_pb2.LeaseRenewResult(renewed=grant_to_proto(result.grant))
    return lease_pb2.LeaseRenewResult(
        lost=lease_pb2.LeaseRenewResult.Lost(identity=result.identity)
    )


def renew_result_from_proto(msg: lease_pb2.LeaseRenewResult) -> LeaseRenewResult:
    case = msg.WhichOneof("result")
    if case == "renewed":
        return Renewed(grant_from_proto(msg.renewed))
    if case == "lost":
        return Lost(AgentIdentity(msg.lost.identity))
    raise InvalidArgument("result", "LeaseRenewResult has no case set")


# -- listing and status ------------------------------------------------------------------


def lease_to_proto(lease: Lease) -> lease_pb2.Lease:
    return lease_pb2.Lease(
        identity=lease.identity,
        holder=lease.holder,
        fencing_token=lease.fencing_token,
        ttl_remaining=duration_to_proto(lease.ttl_remaining),
    )


def lease_from_proto(msg: lease_pb2.Lease) -> Lease:
    return Lease(
        AgentIdentity(msg.identity),
        msg.holder,
        msg.fencing_token,
        duration_from_proto(msg.ttl_remaining),
    )


def lease_info_to_proto(info: LeaseInfo) -> lease_pb2.LeaseInfo:
    return lease_pb2.LeaseInfo(
        fencing_token=info.fencing_token,
        ttl_remaining=duration_to_proto(info.ttl_remaining),
        healthy=info.healthy,
    )


def lease_info_from_proto(msg: lease_pb2.LeaseInfo) -> LeaseInfo:
    return LeaseInfo(msg.fencing_token, duration_from_proto(msg.ttl_remaining), msg.healthy)
