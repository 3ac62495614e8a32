"""Helpers for end-to-end tests: a roster file, a suite process, an orchestrator stub."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mobkit.gen.orchestrator.v1 import orchestrator_pb2 as pb
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2_grpc as svc_grpc
from mobkit.gen.roster.v1 import roster_pb2
from mobkit.testing.processes import ServeProcess


def write_roster(
    path: Path,
    identities: Sequence[str],
    *,
    internal: Sequence[str] = (),
    profile: str = "notebook",
) -> Path:
    lines = [f'[profiles]\n{profile} = "{profile}"\n']
    for identity in identities:
        lines.append(f'[[agents]]\nidentity = "{identity}"\nprofile = "{profile}"\n')
        if identity in internal:
            lines.append('addressability = "internal_only"\n')
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines))
    tmp.replace(path)  # atomic, so a watcher never sees half a file
    return path


def suite_process(
    tmp: Path,
    etcd_endpoint: str,
    roster: Path,
    *,
    prefix: str,
    name: str = "suite",
    extra: Sequence[str] = (),
) -> ServeProcess:
    args = [
        "--etcd-endpoints",
        etcd_endpoint,
        "--etcd-prefix",
        prefix,
        "--roster",
        str(roster),
        "--data-dir",
        str(tmp / name),
        "--continuity-backend",
        "sqlite",
        "--lease-ttl",
        "2",
        "--runtime-instance",
        name,
        "--log-level",
        "WARNING",
        *extra,
    ]
    return ServeProcess("all", args, log_dir=tmp, name=name)


def stub(channel: grpc.aio.Channel) -> svc_grpc.OrchestratorServiceAsyncStub:
    return svc_grpc.OrchestratorServiceStub(channel)


def text_input(text: str, *, key: str | None = None) -> pb.DispatchInput:
    msg = pb.DispatchInput(content=roster_pb2.ContentInput(text=text))
    if key is not None:
        msg.idempotency_key = key
    return msg


def send_request(identity: str, text: str, *, key: str | None = None) -> svc.SendRequest:
    return svc.SendRequest(identity=identity, input=text_input(text, key=key))


def dispatch_request(identity: str, text: str, *, key: str | None = None) -> svc.DispatchRequest:
    return svc.DispatchRequest(identity=identity, input=text_input(text, key=key))


def reason(err: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason of a failed call (exactly one ErrorInfo is attached)."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]  # as in mobkit.wire.errors
    what = f"{err.code().name}: {err.details()}"  # the failure says what came back instead
    assert status is not None, f"no google.rpc.Status on {what}"
    info = error_details_pb2.ErrorInfo()
    assert len(status.details) == 1 and status.details[0].Unpack(info), (
        f"{status.details} on {what}"
    )
    return info.reason


async def eventually(check: Callable[[], bool], what: str, timeout: float = 40.0) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 40.0) -> None:
    """Poll an async ``check`` until it holds; fail naming ``what`` after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.05)
