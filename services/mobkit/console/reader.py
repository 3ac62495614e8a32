"""What each page shows, read over gRPC from the orchestrator and its FlowService.

Every read goes through the Python client (:class:`~mobkit.client.AsyncMobKit`)
holding the caller's own bearer token: the orchestrator answers only what that
token may read. Nothing is cached between requests; the orchestrator (and etcd
behind it) stays the one source of truth.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Mapping
from typing import Any

from mobkit.cli.output import jsonable
from mobkit.client import AsyncMobKit, ClientOptions, StaleEventCursor
from mobkit.core.holder import Holder
from mobkit.core.types import IdentityLifecycleState, IdentityStatus
from mobkit.events.etcd_codec import CURSOR_STRIDE

RECENT_EVENTS = 256
"""How far back (in events) an identity's page looks for its recent turns and events."""
RECENT_TURNS = 20
WIDENINGS = 5
EVENT_PAGE = 500
MAX_CLIENTS = 64
"""Clients kept open at once, one per distinct token (least recently used closed first)."""


def status_json(s: IdentityStatus) -> dict[str, Any]:
    """An identity's status as the pages show it: every field, plus the owner's replica."""
    out: dict[str, Any] = jsonable(s)
    out["replica"] = Holder(s.owner).instance if s.owner else None
    return out


def fleet_summary(statuses: list[IdentityStatus]) -> dict[str, Any]:
    """Counts by state (every state listed, zeros too) and identities owned per replica."""
    counts = {state.value: 0 for state in IdentityLifecycleState}
    owned: collections.Counter[str] = collections.Counter()
    for s in statuses:
        counts[s.state.value] += 1
        if s.owner:
            owned[Holder(s.owner).instance] += 1
    replicas = [{"replica": name, "owned": n} for name, n in sorted(owned.items())]
    return {"counts": counts, "replicas": replicas}


class ClientPool:
    """One :class:`AsyncMobKit` per token (None: the console's own, if any), opened on
    first use; a bounded number stay open."""

    def __init__(self, options: ClientOptions) -> None:
        self.options = options
        self._clients: collections.OrderedDict[str | None, AsyncMobKit] = collections.OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()

    def client(self, token: str | None) -> AsyncMobKit:
        mk = self._clients.get(token)
        if mk is None:
            options = dataclasses.replace(self.options, token=token) if token else self.options
            mk = AsyncMobKit(options=options)
            self._clients[token] = mk
            while len(self._clients) > MAX_CLIENTS:
                _, old = self._clients.popitem(last=False)
                # Closing may cut a stream of that token short; its page reconnects.
                task = asyncio.get_running_loop().create_task(old.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)
        self._clients.move_to_end(token)
        return mk

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), collections.OrderedDict()
        for mk in clients:
            await mk.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)


async def fleet(
    mk: AsyncMobKit, *, state: str | None = None, labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    everyone = [s async for s in mk.list_statuses()]
    wanted = IdentityLifecycleState(state) if state else None
    shown = everyone
    if wanted is not None or labels:
        shown = [s async for s in mk.list_statuses(state=wanted, labels=labels)]
    return {"identities": [status_json(s) for s in shown], **fleet_summary(everyone)}


async def recent_events(mk: AsyncMobKit, limit: int = RECENT_EVENTS) -> dict[str, Any]:
    """The newest ``limit`` events (oldest first) and the log's frontier.

    Cursors are not dense (an etcd revision x 1000 + an index), so the window is
    found by widening it backwards from the frontier until it holds ``limit`` events.
    """
    latest = (await mk.list_events_page(page_size=1)).latest_cursor
    span = limit * CURSOR_STRIDE
    newest: collections.deque[Any] = collections.deque(maxlen=limit)
    for _ in range(WIDENINGS):
        after = max(0, latest - span)
        newest.clear()
        try:
            async for event in mk.list_events(after, page_size=EVENT_PAGE):
                newest.append(jsonable(event))
        except StaleEventCursor:  # below the retention floor: from the oldest kept
            after = 0
            async for event in mk.list_events(0, page_size=EVENT_PAGE):
                newest.append(jsonable(event))
        if len(newest) >= limit or after == 0:
            break
        span *= 8
    return {"events": list(newest), "latest_cursor": latest}


async def identity(mk: AsyncMobKit, name: str) -> dict[str, Any]:
    status = await mk.status(name)
    peers = sorted([str(edge.other(name)) async for edge in mk.topology(name)])
    recent = await recent_events(mk)
    own = [e for e in recent["events"] if e.get("agent_identity") == name]
    turns = [e for e in own if e["kind"] == "turn_completed"][-RECENT_TURNS:]
    return {
        "status": status_json(status),
        "peers": peers,
        "tools": list(status.granted_tools),
        "turns": list(reversed(turns)),
        "events": list(reversed(own))[:RECENT_TURNS],
    }


async def topology(mk: AsyncMobKit) -> dict[str, Any]:
    nodes = [status_json(s) async for s in mk.list_statuses()]
    edges = [{"a": str(e.a), "b": str(e.b)} async for e in mk.topology()]
    return {"nodes": nodes, "edges": edges}


async def modules(mk: AsyncMobKit) -> dict[str, Any]:
    out = []
    for m in await mk.modules():
        out.append(
            {
                "id": m.config.id,
                "state": m.state.value,
                "required": m.required,
                "restart_count": m.restart_count,
                "detail": m.detail,
                "tools": list(m.tools),
                "pid": m.pid,
            }
        )
    return {"modules": out}


async def flows(mk: AsyncMobKit, *, limit: int = 100) -> dict[str, Any]:
    definitions = await mk.flows.list_flows()
    page = await mk.flows.list_runs_page(page_size=limit)
    runs = []
    for view in page.items:
        run = jsonable(view.run)
        runs.append({**run, "created_ms": view.created_ms, "updated_ms": view.updated_ms})
    return {"flows": jsonable(definitions), "runs": runs}
