"""The action routes: log in and out, send or dispatch a message (its progress
streamed back as it happens), and the lifecycle commands."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from mobkit.cli.output import jsonable
from mobkit.client import AsyncMobKit, MobKitError
from mobkit.console.auth import COOKIE, Caller
from mobkit.console.context import Console, action, json_ok
from mobkit.console.errors import error_body
from mobkit.console.reader import status_json
from mobkit.core.errors import InvalidArgument
from mobkit.core.types import DispatchReceipt

MAX_TEXT = 64 * 1024
LIFECYCLE = ("suspend", "resume", "retire", "reset")


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise InvalidArgument("body", "expected a JSON object") from exc
    if not isinstance(body, dict):
        raise InvalidArgument("body", "expected a JSON object")
    return body


@action(None, anonymous=True)
async def login(request: Request, console: Console, caller: Caller) -> Response:
    token = (await _body(request)).get("token")
    if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token.strip()):
        raise InvalidArgument("token", "a bearer token, without spaces")
    token = token.strip()
    principal = console.auth.check(token)
    logged_in = Caller(token, principal)
    response = json_ok({"name": logged_in.name, "actions": logged_in.actions()})
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="strict", secure=console.secure_cookie, path="/"
    )
    return response


@action(None, anonymous=True)
async def logout(request: Request, console: Console, caller: Caller) -> Response:
    response = json_ok({})
    response.delete_cookie(COOKIE, path="/")
    return response


async def _turn(mk: AsyncMobKit, identity: str, text: str, dispatch: bool) -> AsyncIterator[str]:
    """One JSON line per progress item, then the receipt (or the error)."""
    try:
        async for item in mk.send_stream(identity, text, dispatch=dispatch):
            if isinstance(item, DispatchReceipt):
                yield json.dumps({"receipt": jsonable(item)}) + "\n"
            else:
                yield json.dumps({"progress": {"kind": item.kind, "text": item.text}}) + "\n"
    except MobKitError as exc:
        yield json.dumps(error_body(exc)) + "\n"


async def _message(request: Request, console: Console, caller: Caller, dispatch: bool) -> Response:
    text = (await _body(request)).get("text")
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument("text", "a message to send")
    if len(text.encode()) > MAX_TEXT:
        raise InvalidArgument("text", f"at most {MAX_TEXT} bytes")
    identity = request.path_params["identity"]
    stream = _turn(console.client(caller), identity, text, dispatch)
    return StreamingResponse(stream, media_type="application/x-ndjson")


@action("send")
async def send(request: Request, console: Console, caller: Caller) -> Response:
    return await _message(request, console, caller, dispatch=False)


@action("dispatch")
async def dispatch(request: Request, console: Console, caller: Caller) -> Response:
    return await _message(request, console, caller, dispatch=True)


def _lifecycle(name: str) -> Any:
    @action(name)
    async def run(request: Request, console: Console, caller: Caller) -> Response:
        mk = console.client(caller)
        command = getattr(mk, name)
        status = await command(request.path_params["identity"])
        return json_ok({"status": status_json(status)})

    run.__name__ = name
    return run


LIFECYCLE_ROUTES = {name: _lifecycle(name) for name in LIFECYCLE}
