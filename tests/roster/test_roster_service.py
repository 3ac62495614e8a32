"""RosterService on a real gRPC server (port 0), through the client adapter."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mobkit.core.errors import BackendUnavailable, InvalidArgument, InvalidIdentity, RosterInvalid
from mobkit.core.types import RosterContext
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.process import EtcdProcess
from mobkit.gen.roster.v1 import roster_service_pb2 as pb
from mobkit.gen.roster.v1 import roster_service_pb2_grpc as pb_grpc
from mobkit.roster.client import GrpcRosterProvider
from mobkit.roster.domain import RosterSnapshot, RosterUnreadable
from mobkit.roster.etcd_source import put_roster_document, roster_key
from mobkit.roster.service import roster_config
from mobkit.server.config import Settings, load_settings
from mobkit.server.host import start_services

WAIT = 10.0
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "roster.toml"
HEAD = '[profiles]\nworker = "notebook"\n'


def team(*names: str) -> str:
    return HEAD + "".join(f'[[agents]]\nidentity = "{n}"\nprofile = "worker"\n' for n in names)


def write_old(path: Path, text: str) -> None:
    path.write_text(text)
    old = time.time_ns() - 10 * 10**9
    os.utime(path, ns=(old, old))


@asynccontextmanager
async def serving(**settings: Any) -> AsyncIterator[grpc.aio.Channel]:
    config = Settings(listen="127.0.0.1:0", **settings)
    server, resources = await start_services(["roster"], config)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0)
        await resources.close()


async def next_matching(
    stream: AsyncIterator[RosterSnapshot], check: Callable[[RosterSnapshot], bool]
) -> RosterSnapshot:
    async def scan() -> RosterSnapshot:
        async for snap in stream:
            if check(snap):
                return snap
        raise AssertionError("stream ended")

    return await asyncio.wait_for(scan(), WAIT)


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)
    assert status is not None
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert len(infos) == 1 and infos[0].domain == "mobkit.dev"
    return infos[0]


async def test_get_and_watch_a_roster_file(tmp_path: Path) -> None:
    path = tmp_path / "roster.toml"
    write_old(path, team("a", "b"))
    async with serving(roster=str(path), sections={"roster": {"poll_interval": 0.05}}) as channel:
        client = GrpcRosterProvider(channel)
        snap = await client.get_roster(RosterContext(previous_identities=("a",)))  # type: ignore[arg-type]
        assert snap.identities == ["a", "b"] and snap.profiles == {"worker": "notebook"}
        assert snap.revision == path.stat().st_mtime_ns and snap.problem is None

        stream = client.watch_roster()
        first = await asyncio.wait_for(anext(stream), WAIT)
        assert first == snap
        path.write_text(team("a", "b", "c"))
        edited = await next_matching(stream, lambda s: s.identities == ["a", "b", "c"])
        assert edited.revision > first.revision

        path.write_text(
            team("a", "b", "c").replace('profile = "worker"\n', 'profile = "boss"\n', 1)
        )
        bad = await next_matching(stream, lambda s: s.problem is not None)
        assert (bad.specs, bad.revision) == (edited.specs, edited.revision)
        assert bad.problem is not None
        assert (bad.problem.entry, bad.problem.field) == ("agents[0]", "profile")
        assert bad.problem.reason == "ROSTER_INVALID"
        got = await client.get_roster()
        assert got.problem == bad.problem and got.specs == edited.specs
        await stream.aclose()


async def test_never_valid_roster_is_roster_invalid_with_entry_and_field(tmp_path: Path) -> None:
    path = tmp_path / "roster.toml"
    write_old(path, team("ok", "two words"))
    async with serving(roster=str(path)) as channel:
        stub = pb_grpc.RosterServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetRoster(pb.GetRosterRequest(), timeout=WAIT)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        reason = error_info(info.value)
        assert reason.reason == "ROSTER_INVALID"
        assert reason.metadata["entry"] == "agents[1]" and reason.metadata["field"] == "identity"

        client = GrpcRosterProvider(channel)
        with pytest.raises(RosterInvalid) as err:
            await client.get_roster()
        assert not isinstance(err.value, RosterUnreadable)
        assert (err.value.entry, err.value.field) == ("agents[1]", "identity")
        with pytest.raises(RosterInvalid):  # the watch's first message fails the same way
            await asyncio.wait_for(anext(client.watch_roster()), WAIT)


async def test_unreadable_roster_file_is_failed_precondition(tmp_path: Path) -> None:
    async with serving(roster=str(tmp_path / "missing.toml")) as channel:
        stub = pb_grpc.RosterServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.GetRoster(pb.GetRosterRequest(), timeout=WAIT)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_info(info.value).reason == "ROSTER_INVALID"
        with pytest.raises(RosterUnreadable):
            await GrpcRosterProvider(channel).get_roster()


async def test_invalid_previous_identity_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "roster.toml"
    write_old(path, team("a"))
    async with serving(roster=str(path)) as channel:
        with pytest.raises(InvalidIdentity):
            await GrpcRosterProvider(channel).get_roster(
                RosterContext(previous_identities=("a/b",))  # type: ignore[arg-type]
            )


async def test_etcd_roster_writes_are_observed_through_watch(
    etcd_session: EtcdProcess, etcd_client: EtcdClient, etcd_prefix: str
) -> None:
    key = roster_key(etcd_prefix)
    await put_roster_document(etcd_client, key, team("a"))
    async with serving(
        roster="etcd", etcd_endpoints=[etcd_session.endpoint], etcd_prefix=etcd_prefix
    ) as channel:
        stream = GrpcRosterProvider(channel).watch_roster()
        first = await asyncio.wait_for(anext(stream), WAIT)
        assert first.identities == ["a"]
        rev = await put_roster_document(etcd_client, key, team("a", "b"))
        second = await next_matching(stream, lambda s: s.identities == ["a", "b"])
        assert second.revision == rev
        await put_roster_document(etcd_client, key, "agents = [")
        bad = await next_matching(stream, lambda s: s.problem is not None)
        assert bad.revision == rev and bad.problem is not None
        assert "malformed TOML" in bad.problem.message
        await stream.aclose()


async def test_unreachable_roster_service_is_backend_unavailable() -> None:
    from mobkit.etcd.process import free_ports

    (port,) = free_ports(1)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(BackendUnavailable) as info:
            await GrpcRosterProvider(channel, timeout=2).get_roster()
        assert info.value.reason == "BACKEND_UNAVAILABLE"


def test_source_selection() -> None:
    assert roster_config(Settings(roster="r.toml")).path == "r.toml"
    etcd = roster_config(Settings(etcd_endpoints=["http://127.0.0.1:1"], etcd_prefix="/p"))
    assert etcd.path is None and etcd.etcd_key == "/p/roster/document"
    assert roster_config(Settings(roster="etcd:/custom/key")).etcd_key == "/custom/key"
    config = roster_config(
        Settings(
            roster="r.toml", sections={"roster": {"profiles": {"w": "echo"}, "poll_interval": 1}}
        )
    )
    assert config.rules.profiles == {"w": "echo"} and config.poll_interval == 1.0
    # By default profiles may name what the reference runtime offers with this config:
    # its built-in kinds and the [profiles] section's aliases.
    assert config.rules.agent_kinds == {"echo", "llm", "notebook"}
    aliased = Settings(roster="r.toml", sections={"profiles": {"planner": "notebook"}})
    assert roster_config(aliased).rules.agent_kinds == {"echo", "llm", "notebook", "planner"}
    # Another runtime (--runtime-addr) offers what the config lists.
    other = Settings(roster="r.toml", sections={"roster": {"agent_kinds": ["llm"]}})
    assert roster_config(other).rules.agent_kinds == {"llm"}


def test_the_roster_section_of_a_config_file_reaches_the_roster_service(tmp_path: Path) -> None:
    # [roster] is a table of the roster service, not the --roster setting of the same name.
    config = tmp_path / "mobkit.toml"
    config.write_text('[roster]\nprofiles = { w = "echo" }\nagent_kinds = ["echo"]\n')
    settings = load_settings(env={"MOBKIT_CONFIG": str(config)}, overrides={"roster": "r.toml"})
    rules = roster_config(settings).rules
    assert rules.profiles == {"w": "echo"} and rules.agent_kinds == {"echo"}
    assert settings.roster == "r.toml"


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({}, "roster"),
        ({"roster": "r.toml", "sections": {"roster": {"pol_interval": 1}}}, "roster.pol_interval"),
        (
            {"roster": "r.toml", "sections": {"roster": {"poll_interval": 0}}},
            "roster.poll_interval",
        ),
        ({"roster": "r.toml", "sections": {"roster": {"profiles": {"w": 1}}}}, "roster.profiles"),
        (
            {"roster": "r.toml", "sections": {"roster": {"agent_kinds": "notebook"}}},
            "roster.agent_kinds",
        ),
        ({"roster": "r.toml", "sections": {"roster": {"agent_kinds": [""]}}}, "roster.agent_kinds"),
    ],
)
def test_bad_configuration_is_refused_at_start(settings: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        roster_config(Settings(**settings))
    assert info.value.field == field


async def test_mobkit_serve_roster_with_the_example_roster() -> None:
    import sys

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "mobkit.cli",
        "serve",
        "roster",
        "--listen",
        "127.0.0.1:0",
        "--roster",
        str(EXAMPLE),
        "--log-format",
        "text",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stderr is not None

        async def address() -> str:
            assert proc.stderr is not None
            while line := (await proc.stderr.readline()).decode():
                if line.startswith("listening on "):
                    return line.removeprefix("listening on ").strip()
            raise AssertionError("mobkit serve exited without listening")

        addr = await asyncio.wait_for(address(), 30)
        async with grpc.aio.insecure_channel(addr) as channel:
            snap = await GrpcRosterProvider(channel).get_roster()
        assert snap.identities == ["coordinator", "worker-1", "worker-2", "worker-3"]
        assert snap.profiles == {"coordinator": "notebook", "worker": "notebook"}
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 15)
        except TimeoutError:
            proc.kill()
            await proc.wait()
