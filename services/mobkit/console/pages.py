"""The read routes: one JSON document per page, and the live event stream."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mobkit.cli.output import jsonable
from mobkit.console import live, reader
from mobkit.console.auth import Caller
from mobkit.console.context import Console, json_ok, route
from mobkit.core.errors import InvalidArgument
from mobkit.core.types import IdentityLifecycleState

STATES = {s.value for s in IdentityLifecycleState}
EVENT_PAGE = 200


def _labels(request: Request) -> dict[str, str]:
    """``?label=team=alpha&label=role=worker`` -> {"team": "alpha", "role": "worker"}."""
    out = {}
    for item in request.query_params.getlist("label"):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidArgument("label", f"expected KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


@route
async def session(request: Request, console: Console, caller: Caller) -> Response:
    return json_ok({"open": console.auth.open, "name": caller.name, "actions": caller.actions()})


@route
async def fleet(request: Request, console: Console, caller: Caller) -> Response:
    state = request.query_params.get("state") or None
    if state is not None and state not in STATES:
        raise InvalidArgument("state", f"one of {', '.join(sorted(STATES))} (got {state!r})")
    data = await reader.fleet(console.client(caller), state=state, labels=_labels(request))
    return json_ok(data)


@route
async def identity(request: Request, console: Console, caller: Caller) -> Response:
    name = request.path_params["identity"]
    return json_ok(await reader.identity(console.client(caller), name))


@route
async def topology(request: Request, console: Console, caller: Caller) -> Response:
    return json_ok(await reader.topology(console.client(caller)))


@route
async def modules(request: Request, console: Console, caller: Caller) -> Response:
    return json_ok(await reader.modules(console.client(caller)))


@route
async def flows(request: Request, console: Console, caller: Caller) -> Response:
    return json_ok(await reader.flows(console.client(caller)))


@route
async def events(request: Request, console: Console, caller: Caller) -> Response:
    """The events after ``?after=`` (default: the newest page)."""
    mk = console.client(caller)
    after = request.query_params.get("after")
    if after is None:
        return json_ok(await reader.recent_events(mk, EVENT_PAGE))
    if not after.isdigit():
        raise InvalidArgument("after", f"a cursor (a number), got {after!r}")
    page = await mk.list_events_page(int(after), page_size=EVENT_PAGE)
    body = {"events": [jsonable(e) for e in page.events], "latest_cursor": page.latest_cursor}
    return json_ok(body)


@route
async def stream(request: Request, console: Console, caller: Caller) -> Response:
    after = live.resume_cursor(
        request.headers.get("last-event-id"), request.query_params.get("after")
    )
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(
        live.stream(console.client(caller), after),
        media_type="text/event-stream",
        headers=headers,
    )
