"""Who is calling the console, and what they may do: the gRPC API's tokens and scopes.

The browser logs in with a bearer token (kept in an HttpOnly, SameSite=Strict cookie;
scripts may send ``Authorization: Bearer`` instead). Every read and action is made
with that token, so the orchestrator checks it; the console checks it as well, with
the same tokens file and the scope table of :mod:`mobkit.security.scopes`, so a page
shows no button its token may not press and a forged request is refused here (403).
Without a tokens file the console is open, as the suite is.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from mobkit.core.errors import PermissionDenied, Unauthenticated
from mobkit.security.auth import AUTHORIZATION, Principal, TokenRegistry, bearer_metadata
from mobkit.security.scopes import Scope, required_scope

COOKIE = "mobkit_console_token"
ACTION_HEADER = "x-mobkit-console"
"""Every action request carries it: a cross-site form cannot set a header (CSRF)."""
ORCHESTRATOR = "/mobkit.orchestrator.v1.OrchestratorService/"

ACTIONS: dict[str, str] = {
    "send": "Send",
    "dispatch": "Dispatch",
    "suspend": "SuspendIdentity",
    "resume": "ResumeIdentity",
    "retire": "RetireIdentity",
    "reset": "ResetIdentity",
}
"""Console action -> the orchestrator RPC it calls (whose scope it needs)."""


def action_scope(action: str) -> Scope:
    scope = required_scope(ORCHESTRATOR + ACTIONS[action])
    assert scope is not None  # the orchestrator's RPCs all need one
    return scope


@dataclass(frozen=True, slots=True)
class Caller:
    """A request's token (None: none given) and, when the console checks tokens, whose."""

    token: str | None
    principal: Principal | None

    def allows(self, scope: Scope) -> bool:
        return self.principal is None or self.principal.allows(scope)

    def actions(self) -> list[str]:
        """The actions this caller's pages offer."""
        return [a for a in ACTIONS if self.allows(action_scope(a))]

    @property
    def name(self) -> str | None:
        return self.principal.name if self.principal else None


class ConsoleAuth:
    def __init__(self, registry: TokenRegistry | None, call_token: str | None = None) -> None:
        self.registry = registry
        # Open console: the console's own token (--call-token-file), if it has one.
        self.call_token = call_token

    @property
    def open(self) -> bool:
        return self.registry is None

    def check(self, token: str) -> Principal | None:
        """The principal of a login token; :class:`Unauthenticated` if unknown."""
        if self.registry is None:
            return None
        return self.registry.authenticate(bearer_metadata(token))

    def caller(self, request: Request) -> Caller:
        token = _token_of(request)
        if self.registry is None:
            return Caller(token or self.call_token, None)
        if token is None:
            raise Unauthenticated("log in with a bearer token")
        return Caller(token, self.check(token))

    def require(self, caller: Caller, action: str) -> None:
        scope = action_scope(action)
        if not caller.allows(scope):
            assert caller.principal is not None
            raise PermissionDenied(
                f"{caller.principal.name!r} lacks scope {scope.value!r} for {action}",
                principal=caller.principal.name,
                required_scope=scope.value,
                action=action,
            )


def _token_of(request: Request) -> str | None:
    header = request.headers.get(AUTHORIZATION)
    if header:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        raise Unauthenticated("malformed authorization header: expected 'Bearer <token>'")
    return request.cookies.get(COOKIE) or None
