"""Issue 18: a turn on a remote runtime over RunTurnStream vs the unary RunTurn.

    ./dev bench stream [--quick] [--clients-only] [--agent notebook|llm|both]

``mobkit serve runtime`` runs in its own process. Every figure is printed next to
its baseline from the same run, the cases timed one of each in turn (so drift on
a shared machine hits all alike):
- the floor: a bare grpc.aio bidirectional call (one message each way) vs a bare
  unary call, to the same echo process;
- the runtime's turn as the orchestrator drives it (``GrpcAgentRuntime``): an echo
  turn over unary RunTurn (baseline) vs RunTurnStream (callbacks offered, none
  used); a notebook turn whose tool call is answered on the stream;
- Send end to end (orchestrator, fenced SQLite checkpoint) with the remote runtime,
  the orchestrator's turns over RunTurnStream vs the same over unary RunTurn --
  the issue's figure, goal <= 1.3x;
- with the in-process runtime (``mobkit serve all`` in its own process): SendStream
  to its receipt vs Send (goal <= 1.3x), and SubmitTurn then WatchTurn to the
  finished ticket vs Send (goal <= 1.5x), with what a ticket is made of beside it:
  a keyed Send (a ticket's turn stores its receipt), a WatchTurn alone, and one
  bare RPC to the same server (the floor of a second call). These figures come
  twice (``--agent`` picks one): with notebook turns (next to no work, so every
  fixed cost shows in full) and with ``llm`` turns against an OpenAI-compatible
  server on loopback (its own process, answering at once: the cheapest turn a
  model-backed agent has, its HTTP call to the model included).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks._common import EchoServer, ModelProcess, pct, side_by_side, summary
from mobkit.core.types import AgentBuildDraft, DispatchInput
from mobkit.etcd.process import EtcdProcess
from mobkit.gen.orchestrator.v1 import orchestrator_service_pb2 as svc
from mobkit.runtime.client import GrpcAgentRuntime
from mobkit.server.config import load_settings
from mobkit.server.host import start_services
from mobkit.server.resources import Resources
from mobkit.testing.fleet import wait_fleet
from mobkit.testing.processes import ServeProcess
from mobkit.testing.suite import send_request, stub, text_input, write_roster

ROUNDS = 10
PROVIDERS = ["lease", "continuity", "roster", "topology", "customizer", "orchestrator"]
Call = Callable[[int], Awaitable[object]]


async def peer_sender(peer: str, text: str) -> str:
    return "ok"


async def tool_caller(name: str, arguments: dict[str, Any]) -> Any:
    return {"ok": True}


class UnaryTurns:
    """The remote runtime as before RunTurnStream: turns without callbacks (RunTurn)."""

    def __init__(self, inner: GrpcAgentRuntime) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def run_turn(self, session_id: str, message: DispatchInput, **kw: Any) -> Any:
        return await self._inner.run_turn(session_id, message, peers=kw.get("peers", ()))


async def interleaved(cases: dict[str, Call], n: int, between: Call | None = None) -> Any:
    """Every case timed in turn with the others (one of each, then again), in
    ``ROUNDS`` rounds with ``between`` run after each."""
    out: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(ROUNDS):
        got = await side_by_side(list(cases.values()), n // ROUNDS, warmup=50 if r == 0 else 5)
        for name, samples in zip(cases, got, strict=True):
            out[name] += samples
        if between is not None:
            await between(r)
    return out


def ratio(name: str, samples: list[float], base: list[float], goal: str = "") -> str:
    return (
        f"{name}: {summary(samples)}  = {pct(samples, 0.5) / pct(base, 0.5):.2f}x baseline"
        f" p50{goal}, {pct(samples, 0.99) / pct(base, 0.99):.2f}x p99"
    )


async def floor(n: int) -> None:
    with EchoServer() as echo:
        async with grpc.aio.insecure_channel(echo.address) as ch:
            got = await interleaved({"unary": echo.call(ch), "bidi": echo.call_stream(ch)}, n)
    print(f"bare grpc.aio unary echo (baseline): {summary(got['unary'])}")
    print(
        ratio("bare grpc.aio bidirectional echo, one message each way", got["bidi"], got["unary"])
    )


async def runtime_turns(channel: grpc.aio.Channel, n: int) -> None:
    runtime = GrpcAgentRuntime(channel)
    echo = (await runtime.create_session("bench-echo", "echo", AgentBuildDraft())).session_id
    note = (await runtime.create_session("bench-note", "notebook", AgentBuildDraft())).session_id
    ping, tool = DispatchInput("ping"), DispatchInput("tool bench.t {}")
    tools, forget = DispatchInput("tools"), DispatchInput("forget")
    cases: dict[str, Call] = {
        "unary": lambda i: runtime.run_turn(echo, ping),
        "stream": lambda i: runtime.run_turn(
            echo, ping, peers=("p",), peer_sender=peer_sender, tool_caller=tool_caller
        ),
        # The same notebook session for both: the same state size.
        "notebook": lambda i: runtime.run_turn(note, tools),
        "notebook tool": lambda i: runtime.run_turn(note, tool, tool_caller=tool_caller),
    }
    # "forget" between rounds: the notebook's notes do not grow from round to round.
    got = await interleaved(cases, n, lambda r: runtime.run_turn(note, forget))
    print(f"runtime echo turn, unary RunTurn (baseline): {summary(got['unary'])}")
    print(ratio("runtime echo turn, RunTurnStream", got["stream"], got["unary"]))
    print(f"runtime notebook turn, unary RunTurn (baseline): {summary(got['notebook'])}")
    print(
        ratio(
            "runtime notebook turn over RunTurnStream, one tool call answered on the stream",
            got["notebook tool"],
            got["notebook"],
        )
    )


async def orchestrator(
    tmp: Path, etcd: str, runtime_channel: grpc.aio.Channel, name: str, unary: bool
) -> Any:
    """An orchestrator in this process whose runtime is the remote one."""
    ids = [f"{name}-{i:02d}" for i in range(20)]
    settings = load_settings(
        env={},
        overrides={
            "listen": "127.0.0.1:0",
            "etcd_endpoints": [etcd],
            "etcd_prefix": f"/bench-stream-{uuid.uuid4().hex[:6]}",
            "roster": str(write_roster(tmp / f"{name}.toml", ids)),
            "data_dir": str(tmp / name),
            "continuity_backend": "sqlite",
            "runtime_instance": name,
            "log_level": "WARNING",
        },
    )
    resources = Resources(settings)
    remote = GrpcAgentRuntime(runtime_channel)
    resources.providers["runtime"] = UnaryTurns(remote) if unary else remote
    server, resources = await start_services(PROVIDERS, settings, resources)
    return server, resources, ids


async def sends(tmp: Path, runtime_channel: grpc.aio.Channel, n: int) -> None:
    etcd = EtcdProcess(tmp / "etcd")
    await etcd.start_async()
    started: list[Any] = []
    channels: list[grpc.aio.Channel] = []
    try:
        cases: dict[str, Call] = {}
        for name, unary in (("unary", True), ("stream", False)):
            server, resources, ids = await orchestrator(
                tmp, etcd.endpoint, runtime_channel, name, unary
            )
            started.append((server, resources))
            ch = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
            channels.append(ch)
            await wait_fleet(ch, len(ids), owners=1, timeout=120)
            o = stub(ch)

            def send(i: int, o: Any = o, ids: list[str] = ids) -> Awaitable[object]:
                return o.Send(send_request(ids[i % len(ids)], "ping"), timeout=30)

            cases[name] = send
        got = await interleaved(cases, n)
        print(
            f"Send with a remote runtime, turns over unary RunTurn (baseline): {summary(got['unary'])}"
        )
        print(
            ratio(
                "Send with a remote runtime, turns over RunTurnStream",
                got["stream"],
                got["unary"],
                " (goal <= 1.3x)",
            )
        )
    finally:
        for ch in channels:
            await ch.close()
        for server, resources in started:
            await server.stop(0)
            await resources.close()
        await etcd.stop_async()


async def client_streams(tmp: Path, n: int, agent: str) -> None:
    etcd = EtcdProcess(tmp / f"etcd-client-{agent}")
    await etcd.start_async()
    ids = [f"c-{i:02d}" for i in range(20)]
    roster = write_roster(tmp / f"client-{agent}.toml", ids, profile=agent)
    args = [
        "--etcd-endpoints", etcd.endpoint, "--etcd-prefix", "/bench-client-streams",
        "--roster", str(roster), "--data-dir", str(tmp / f"client-{agent}"),
        "--continuity-backend", "sqlite", "--log-level", "WARNING",
    ]  # fmt: skip
    print(f"in-process runtime, {agent} agents:")
    try:
        with contextlib.ExitStack() as stack:
            if agent == "llm":
                model = stack.enter_context(ModelProcess())
                config = tmp / "llm.toml"
                config.write_text(f'[llm]\nbase_url = "{model.base_url}"\nmodel = "tiny"\n')
                args += ["--config", str(config)]
            proc = stack.enter_context(
                ServeProcess("all", args, log_dir=tmp, name=f"client-streams-{agent}")
            )
            async with grpc.aio.insecure_channel(proc.address or "") as ch:
                await wait_fleet(ch, len(ids), owners=1, timeout=120)
                o = stub(ch)

                async def send(i: int) -> object:
                    return await o.Send(send_request(ids[i % len(ids)], "ping"), timeout=30)

                async def send_stream(i: int) -> object:
                    request = svc.SendStreamRequest(
                        identity=ids[i % len(ids)], input=text_input("ping")
                    )
                    return [item async for item in o.SendStream(request, timeout=30)]

                async def ticket(i: int) -> object:
                    request = svc.SubmitTurnRequest(
                        identity=ids[i % len(ids)], input=text_input("ping")
                    )
                    turn = (await o.SubmitTurn(request, timeout=30)).turn
                    watch = o.WatchTurn(svc.WatchTurnRequest(turn_id=turn.turn_id), timeout=30)
                    return [item async for item in watch]

                # The floor of a ticket's second call: one RPC to the same server.
                health = health_pb2_grpc.HealthStub(ch)
                done = (await o.SubmitTurn(svc.SubmitTurnRequest(
                    identity=ids[0], input=text_input("ping")), timeout=30)).turn.turn_id  # fmt: skip

                async def check(i: int) -> object:
                    return await health.Check(health_pb2.HealthCheckRequest(), timeout=30)

                async def watch_done(i: int) -> object:
                    watch = o.WatchTurn(svc.WatchTurnRequest(turn_id=done), timeout=30)
                    return [item async for item in watch]

                async def keyed(i: int) -> object:
                    request = send_request(ids[i % len(ids)], "ping", key=uuid.uuid4().hex)
                    return await o.Send(request, timeout=30)

                got = await interleaved(
                    {"send": send, "stream": send_stream, "ticket": ticket, "keyed": keyed,
                     "watch": watch_done, "check": check}, n,
                )  # fmt: skip
        print(f"Send, in-process runtime (baseline): {summary(got['send'])}")
        print(ratio("SendStream to its receipt", got["stream"], got["send"], " (goal <= 1.3x)"))
        print(
            ratio(
                "SubmitTurn, then WatchTurn to the finished ticket",
                got["ticket"],
                got["send"],
                " (goal <= 1.5x)",
            )
        )
        print("  what a ticket is made of, against the same Send:")
        print(ratio("  Send with an idempotency key (a ticket's turn keeps its receipt)",
                    got["keyed"], got["send"]))  # fmt: skip
        print(ratio("  WatchTurn of a ticket finished already", got["watch"], got["send"]))
        print(ratio("  one bare RPC to the same server (Health.Check)", got["check"], got["send"]))
    finally:
        await etcd.stop_async()


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="bench stream")
    parser.add_argument("--quick", action="store_true", help="fewer samples (smoke run)")
    parser.add_argument(
        "--clients-only",
        action="store_true",
        help="only the in-process figures: SendStream and SubmitTurn + WatchTurn vs Send",
    )
    parser.add_argument(
        "--agent",
        choices=("notebook", "llm", "both"),
        default="both",
        help="the agents of the in-process figures (llm: against a loopback model)",
    )
    args = parser.parse_args(argv)
    n = 500 if args.quick else 3000
    tmp = Path(tempfile.mkdtemp(prefix="mobkit-bench-stream-"))
    agents = ("notebook", "llm") if args.agent == "both" else (args.agent,)
    if args.clients_only:
        for agent in agents:
            await client_streams(tmp, n // 5, agent)
        return
    await floor(n)
    with ServeProcess("runtime", ["--log-level", "WARNING"], log_dir=tmp) as proc:
        async with grpc.aio.insecure_channel(proc.address or "") as channel:
            await runtime_turns(channel, n)
            await sends(tmp, channel, n // 3)
    for agent in agents:
        await client_streams(tmp, n // 5, agent)
