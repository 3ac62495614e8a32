"""Which scope each RPC needs: the one table, kept next to API.md's RPC list.

Scopes nest: ``admin`` includes ``write``, which includes ``read``. Reads change
nothing; writes are the suite's normal traffic (the orchestrator's calls to its
providers, sending to agents); admin is operator work that discards or rewinds
state. Health and reflection need no token. A MobKit RPC missing here needs
``admin`` (fail closed); a test keeps this table complete.
"""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"


IMPLIED: dict[Scope, frozenset[Scope]] = {
    Scope.READ: frozenset({Scope.READ}),
    Scope.WRITE: frozenset({Scope.READ, Scope.WRITE}),
    Scope.ADMIN: frozenset({Scope.READ, Scope.WRITE, Scope.ADMIN}),
}

R, W, A = Scope.READ, Scope.WRITE, Scope.ADMIN

REQUIRED_SCOPES: dict[str, dict[str, Scope]] = {
    "mobkit.lease.v1.LeaseService": {
        "AcquireLeases": W,
        "RenewLeases": W,
        "ReleaseLeases": W,
        "ListLeases": R,
    },
    "mobkit.continuity.v1.ContinuityStoreService": {
        "ResolveMany": R,
        "LoadSessionSnapshot": R,
        "LoadReceipt": R,
        "SaveSessionSnapshot": W,
        "SaveSessionSnapshots": W,
        "UpsertContinuityRecord": W,
        "DeleteContinuityRecord": A,
        "DeleteSessionSnapshotIfCurrentRevision": W,
        "ResolveRecordBySession": R,
        "GetContinuityHealth": R,
    },
    "mobkit.roster.v1.RosterService": {"GetRoster": R, "WatchRoster": R},
    "mobkit.topology.v1.TopologyService": {"ComputeEdges": R},
    "mobkit.customizer.v1.AgentCustomizerService": {"CustomizeBuild": W, "AfterCreate": W},
    "mobkit.runtime.v1.AgentRuntimeService": {
        "CreateSession": W,
        "ResumeSession": W,
        "RunTurn": W,
        "RunTurnStream": W,
        "ExportSnapshot": W,
        "CloseSession": W,
    },
    "mobkit.orchestrator.v1.OrchestratorService": {
        "Reconcile": A,
        "GetIdentityStatus": R,
        "ListIdentityStatuses": R,
        "Send": W,
        "Dispatch": W,
        "ResetIdentity": A,
        "RetireIdentity": A,
        "SuspendIdentity": A,
        "ResumeIdentity": A,
        "ListEvents": R,
        "WatchEvents": R,
        "GetTopology": R,
        "ListModules": R,
        "SendStream": W,
        "DispatchStream": W,
        "ForwardStream": W,  # replica to replica: forwarded Send and Dispatch
        "SubmitTurn": W,
        "GetTurn": R,
        "WatchTurn": R,
    },
    "mobkit.flows.v1.FlowService": {
        "ListFlows": R,
        "StartRun": W,
        "GetRun": R,
        "ListRuns": R,
        "CancelRun": W,
        "WatchRun": R,
    },
}

OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)


def split_method(method: str) -> tuple[str, str]:
    """``/pkg.Service/Method`` -> (``pkg.Service``, ``Method``)."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


def required_scope(method: str) -> Scope | None:
    """The scope a call to ``method`` needs; None for the open services."""
    service, name = split_method(method)
    if service in OPEN_SERVICES:
        return None
    return REQUIRED_SCOPES.get(service, {}).get(name, Scope.ADMIN)
