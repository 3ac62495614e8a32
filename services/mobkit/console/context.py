"""What every route needs: the clients, the auth check, and one error handling."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mobkit.client import AsyncMobKit
from mobkit.console.auth import ACTION_HEADER, Caller, ConsoleAuth
from mobkit.console.errors import error_response
from mobkit.console.reader import ClientPool
from mobkit.core.errors import MobKitError, PermissionDenied


@dataclass
class Console:
    pool: ClientPool
    auth: ConsoleAuth
    secure_cookie: bool = False
    """Mark the login cookie Secure (the console is served over TLS)."""

    def client(self, caller: Caller) -> AsyncMobKit:
        return self.pool.client(caller.token)


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


Handler = Callable[[Request, Console, Caller], Awaitable[Response]]


def route(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A read: the caller must be authenticated (when tokens are on)."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        console = console_of(request)
        try:
            return await handler(request, console, console.auth.caller(request))
        except MobKitError as exc:
            return error_response(exc)

    return wrapped


def action(
    name: str | None, *, anonymous: bool = False
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """A state-changing POST: the CSRF header, the caller (unless ``anonymous``: log in
    and out), then the scope of action ``name``, checked here before the orchestrator
    checks it again."""

    def decorate(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(handler)
        async def wrapped(request: Request) -> Response:
            console = console_of(request)
            try:
                if request.headers.get(ACTION_HEADER) != "1":
                    raise PermissionDenied(f"console actions need the {ACTION_HEADER} header")
                caller = Caller(None, None) if anonymous else console.auth.caller(request)
                if name is not None:
                    console.auth.require(caller, name)
                return await handler(request, console, caller)
            except MobKitError as exc:
                return error_response(exc)

        return wrapped

    return decorate


def json_ok(data: object, status_code: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status_code)
