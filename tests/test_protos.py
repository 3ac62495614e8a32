"""The generated gRPC surface matches API.md: service and RPC names, streaming kinds,
and the field conventions every provider relies on."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, ServiceDescriptor

UNARY = (False, False)
SERVER_STREAM = (False, True)
BIDI = (True, True)

# package -> service -> rpc -> (client_streaming, server_streaming); names from API.md.
API: dict[str, dict[str, dict[str, tuple[bool, bool]]]] = {
    "lease": {
        "LeaseService": dict.fromkeys(
            ["AcquireLeases", "RenewLeases", "ReleaseLeases", "ListLeases"], UNARY
        ),
    },
    "continuity": {
        "ContinuityStoreService": dict.fromkeys(
            [
                "ResolveMany",
                "LoadSessionSnapshot",
                "SaveSessionSnapshot",
                "UpsertContinuityRecord",
                "DeleteContinuityRecord",
                "DeleteSessionSnapshotIfCurrentRevision",
                "ResolveRecordBySession",
                "GetContinuityHealth",
                "LoadReceipt",  # compatible extension beyond API.md (receipts kept for a time)
                "SaveSessionSnapshots",  # compatible extension: concurrent saves in one call
            ],
            UNARY,
        ),
    },
    "roster": {
        "RosterService": {"GetRoster": UNARY, "WatchRoster": SERVER_STREAM},
    },
    "topology": {
        "TopologyService": {"ComputeEdges": UNARY},
    },
    "customizer": {
        "AgentCustomizerService": dict.fromkeys(["CustomizeBuild", "AfterCreate"], UNARY),
    },
    "runtime": {
        "AgentRuntimeService": {
            **dict.fromkeys(
                ["CreateSession", "ResumeSession", "RunTurn", "ExportSnapshot", "CloseSession"],
                UNARY,
            ),
            "RunTurnStream": BIDI,
        },
    },
    "orchestrator": {
        "OrchestratorService": {
            **dict.fromkeys(
                [
                    "Reconcile",
                    "GetIdentityStatus",
                    "ListIdentityStatuses",
                    "Send",
                    "Dispatch",
                    "ResetIdentity",
                    "RetireIdentity",
                    "SuspendIdentity",
                    "ResumeIdentity",
                    "ListEvents",
                    "GetTopology",
                    "ListModules",  # compatible extension beyond API.md (module health)
                    "SubmitTurn",
                    "GetTurn",
                ],
                UNARY,
            ),
            **dict.fromkeys(
                ["WatchEvents", "SendStream", "DispatchStream", "WatchTurn"], SERVER_STREAM
            ),
            "ForwardStream": BIDI,  # between replicas: forwarded turns on one stream
        },
    },
    "flows": {
        "FlowService": {
            **dict.fromkeys(["ListFlows", "StartRun", "GetRun", "ListRuns", "CancelRun"], UNARY),
            "WatchRun": SERVER_STREAM,
        },
    },
}

U64 = FieldDescriptor.TYPE_UINT64


def _pb2(svc: str) -> ModuleType:
    return importlib.import_module(f"mobkit.gen.{svc}.v1.{svc}_service_pb2")


def _grpc(svc: str) -> ModuleType:
    return importlib.import_module(f"mobkit.gen.{svc}.v1.{svc}_service_pb2_grpc")


def _services() -> list[tuple[str, str]]:
    return [(pkg, name) for pkg, services in API.items() for name in services]


def _all_messages() -> list[Descriptor]:
    seen: dict[str, Descriptor] = {}

    def walk(desc: Descriptor) -> None:
        if desc.full_name in seen:
            return
        seen[desc.full_name] = desc
        for nested in desc.nested_types:
            walk(nested)
        for field in desc.fields:
            if field.message_type is not None and field.message_type.full_name.startswith(
                "mobkit."
            ):
                walk(field.message_type)

    for pkg in API:
        for desc in _pb2(pkg).DESCRIPTOR.message_types_by_name.values():
            walk(desc)
    return [d for d in seen.values() if not d.GetOptions().map_entry]


@pytest.mark.parametrize(("pkg", "service"), _services())
def test_service_has_exactly_the_api_rpcs(pkg: str, service: str) -> None:
    svc: ServiceDescriptor = _pb2(pkg).DESCRIPTOR.services_by_name[service]
    assert svc.full_name == f"mobkit.{pkg}.v1.{service}"
    actual = {m.name: (m.client_streaming, m.server_streaming) for m in svc.methods}
    assert actual == API[pkg][service]


@pytest.mark.parametrize(("pkg", "service"), _services())
def test_generated_grpc_module_exposes_stub_and_servicer(pkg: str, service: str) -> None:
    mod = _grpc(pkg)
    stub, servicer = getattr(mod, f"{service}Stub"), getattr(mod, f"{service}Servicer")
    assert callable(getattr(mod, f"add_{service}Servicer_to_server"))
    for rpc in API[pkg][service]:
        assert callable(getattr(servicer, rpc))
    assert stub.__name__ == f"{service}Stub"


@pytest.mark.parametrize(("pkg", "service"), _services())
def test_every_rpc_has_its_own_request_and_response(pkg: str, service: str) -> None:
    svc = _pb2(pkg).DESCRIPTOR.services_by_name[service]
    for m in svc.methods:
        assert m.input_type.name == f"{m.name}Request"
        assert m.output_type.name == f"{m.name}Response"


def _list_rpcs() -> list[tuple[str, str, str]]:
    """Every ``List*`` RPC of the generated services: (package, service, rpc)."""
    return [
        (pkg, service, m.name)
        for pkg, service in _services()
        for m in _pb2(pkg).DESCRIPTOR.services_by_name[service].methods
        if m.name.startswith("List")
    ]


def test_list_rpcs_are_found() -> None:
    # The pagination test below checks what this finds: it must find the API's ones.
    assert {"ListLeases", "ListIdentityStatuses", "ListEvents"} <= {r for *_, r in _list_rpcs()}


@pytest.mark.parametrize(("pkg", "service", "rpc"), _list_rpcs())
def test_list_rpcs_paginate(pkg: str, service: str, rpc: str) -> None:
    m = _pb2(pkg).DESCRIPTOR.services_by_name[service].methods_by_name[rpc]
    assert m.input_type.fields_by_name["page_size"].type == FieldDescriptor.TYPE_INT32
    assert m.input_type.fields_by_name["page_token"].type == FieldDescriptor.TYPE_STRING
    assert m.output_type.fields_by_name["next_page_token"].type == FieldDescriptor.TYPE_STRING


def test_ordering_tokens_are_uint64_everywhere() -> None:
    checked = 0
    for desc in _all_messages():
        for name in ("generation", "checkpoint_version", "fencing_token"):
            field = desc.fields_by_name.get(name)
            if field is not None:
                assert field.type == U64, f"{desc.full_name}.{name}"
                checked += 1
    assert checked >= 10


def test_no_success_or_error_fields_in_responses() -> None:
    for desc in _all_messages():
        if desc.name.endswith("Response"):
            assert not {"success", "error"} & set(desc.fields_by_name), desc.full_name


def test_tagged_unions_are_oneofs() -> None:
    from mobkit.gen.continuity.v1 import continuity_pb2
    from mobkit.gen.lease.v1 import lease_pb2
    from mobkit.gen.orchestrator.v1 import orchestrator_pb2

    expected: dict[Descriptor, tuple[str, set[str]]] = {
        continuity_pb2.ContinuityResolveState.DESCRIPTOR: (
            "state",
            {"uninitialized", "ready", "broken"},
        ),
        continuity_pb2.DurabilityPolicy.DESCRIPTOR: (
            "policy",
            {"sync_write_through", "async_replicated", "buffered_export"},
        ),
        lease_pb2.LeaseAcquireResult.DESCRIPTOR: ("result", {"acquired", "already_held"}),
        lease_pb2.LeaseRenewResult.DESCRIPTOR: ("result", {"renewed", "lost"}),
        orchestrator_pb2.UnifiedEvent.DESCRIPTOR: ("event", {"agent", "module"}),
    }
    for desc, (oneof, cases) in expected.items():
        fields = desc.oneofs_by_name[oneof].fields
        assert {f.name for f in fields} == cases, desc.full_name
    held = lease_pb2.LeaseAcquireResult(
        already_held=lease_pb2.LeaseAcquireResult.AlreadyHeld(identity="planner", holder="i1@h:1")
    )
    assert held.WhichOneof("result") == "already_held"


def test_enums_start_at_unspecified() -> None:
    for pkg in API:
        for mod_name in (f"{pkg}_service_pb2", f"{pkg}_pb2"):
            mod = importlib.import_module(f"mobkit.gen.{pkg}.v1.{mod_name}")
            for enum in mod.DESCRIPTOR.enum_types_by_name.values():
                assert enum.values_by_number[0].name.endswith("_UNSPECIFIED"), enum.full_name
