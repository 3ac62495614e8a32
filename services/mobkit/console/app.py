"""The console's Starlette app: the page, its static files, the JSON API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mobkit.console import actions, pages
from mobkit.console.context import Console

STATIC = Path(__file__).parent / "static"
SECURITY_HEADERS = {
    # Everything the page loads is its own (no CDN, no inline script).
    "Content-Security-Policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


def build_app(console: Console) -> Starlette:
    identity = "/api/identities/{identity:str}"
    routes = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/api/session", pages.session),
        Route("/api/login", actions.login, methods=["POST"]),
        Route("/api/logout", actions.logout, methods=["POST"]),
        Route("/api/fleet", pages.fleet),
        Route(identity, pages.identity),
        Route(identity + "/send", actions.send, methods=["POST"]),
        Route(identity + "/dispatch", actions.dispatch, methods=["POST"]),
        *(
            Route(f"{identity}/{name}", handler, methods=["POST"])
            for name, handler in actions.LIFECYCLE_ROUTES.items()
        ),
        Route("/api/topology", pages.topology),
        Route("/api/modules", pages.modules),
        Route("/api/flows", pages.flows),
        Route("/api/events", pages.events),
        Route("/api/live", pages.stream),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await console.pool.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.console = console
    app.add_middleware(_SecurityHeaders)
    return app


class _SecurityHeaders:
    """Adds :data:`SECURITY_HEADERS` to every answer (plain ASGI: streams pass through)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, with_headers)
