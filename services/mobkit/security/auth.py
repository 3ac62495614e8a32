"""Per-call bearer-token authentication with scopes.

Callers send ``authorization: Bearer <token>``. The server knows tokens only by
their SHA-256 (hex) from a tokens file, so the file leaks no usable secret::

    # tokens.toml (``--auth-tokens-file``); JSON with the same shape also works
    [tokens.9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08]
    name = "ops"
    scopes = ["admin"]                 # read, write, admin (admin > write > read)
    expires_at = 2027-01-01T00:00:00Z  # optional; no offset means UTC
    runtime_instances = ["orch-1@10.0.0.5:7000"]  # optional: may hold leases only as these

``mobkit token create`` (:func:`issue_token`) makes a token and appends its entry.
No token, a malformed header, an unknown or expired token -> UNAUTHENTICATED;
a token without the RPC's scope (:mod:`mobkit.security.scopes`) ->
PERMISSION_DENIED. The token itself never enters an error, metadata or log.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import tomllib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import grpc
from grpc_status import rpc_status

from mobkit.core.bounds import echo
from mobkit.core.errors import InvalidArgument, MobKitError, PermissionDenied, Unauthenticated
from mobkit.core.identity import parse_runtime_instance
from mobkit.security.scopes import IMPLIED, Scope, required_scope
from mobkit.wire.status import status_for

AUTHORIZATION = "authorization"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SETTING = "auth_tokens_file"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits); the prefix makes leaked ones easy to grep for."""
    return "mbk_" + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Principal:
    """Who a token belongs to and what it may do."""

    name: str
    scopes: frozenset[Scope]
    expires_at: datetime | None = None
    # The runtime instances this token may acquire, renew and release leases as;
    # None: any (an operator's or a holder-less SDK's token).
    runtime_instances: frozenset[str] | None = None

    def allows(self, scope: Scope) -> bool:
        return any(scope in IMPLIED[s] for s in self.scopes)

    def lease_holder(self, requested: str | None, method: str) -> str | None:
        """The runtime instance a lease call acts as: ``requested`` if this token may act
        as it; for an instance-scoped token that names none, its only instance. Raises
        :class:`PermissionDenied` when the token may not act as the requested one."""
        allowed = self.runtime_instances
        if allowed is None:
            return requested
        if requested:
            if requested in allowed:
                return requested
            raise PermissionDenied(
                f"{self.name!r} may not act as runtime instance {echo(requested)} in {method}",
                principal=self.name,
                runtime_instance=requested,
                method=method,
            )
        if len(allowed) == 1:
            return next(iter(allowed))
        raise PermissionDenied(
            f"{self.name!r} is scoped to several runtime instances: "
            f"name one in runtime_instance for {method}",
            principal=self.name,
            method=method,
        )

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def _expiry(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidArgument(_SETTING, f"{where}: expires_at is not RFC 3339") from exc
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise InvalidArgument(_SETTING, f"{where}: expires_at is not a date-time")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _principal(digest: str, entry: Any) -> Principal:
    where = f"token {digest[:8]}…"
    if not isinstance(entry, Mapping):
        raise InvalidArgument(_SETTING, f"{where}: expected a table")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument(_SETTING, f"{where}: needs a name")
    raw_scopes = entry.get("scopes")
    if not isinstance(raw_scopes, list) or not raw_scopes:
        raise InvalidArgument(_SETTING, f"{where}: needs scopes (read, write, admin)")
    try:
        scopes = frozenset(Scope(s) for s in raw_scopes)
    except ValueError as exc:
        raise InvalidArgument(_SETTING, f"{where}: unknown scope in {raw_scopes}") from exc
    return Principal(
        name,
        scopes,
        _expiry(entry.get("expires_at"), where),
        _instances(entry.get("runtime_instances"), where),
    )


def _instances(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(_SETTING, f"{where}: runtime_instances must be a list of strings")
    return frozenset(value)


class TokenRegistry:
    """Principals by token SHA-256; answers "who is this and may they call that"."""

    def __init__(
        self,
        principals: Mapping[str, Principal],
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._by_hash = dict(principals)
        self._clock = clock

    def __len__(self) -> int:
        return len(self._by_hash)

    @classmethod
    def parse(cls, data: Mapping[str, Any], **kwargs: Any) -> TokenRegistry:
        tokens = data.get("tokens", {})
        if not isinstance(tokens, Mapping):
            raise InvalidArgument(_SETTING, "expected a [tokens.<sha256>] table per token")
        principals = {}
        for digest, entry in tokens.items():
            key = str(digest).lower()
            if not _HEX64.fullmatch(key):
                raise InvalidArgument(_SETTING, "token keys must be SHA-256 hex digests")
            principals[key] = _principal(key, entry)
        return cls(principals, **kwargs)

    @classmethod
    def load(cls, path: str | Path, **kwargs: Any) -> TokenRegistry:
        path = Path(path)
        try:
            text = path.read_text()
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (OSError, ValueError) as exc:  # JSON and TOML decode errors are ValueErrors
            raise InvalidArgument(_SETTING, f"cannot load {path}: {exc}") from exc
        return cls.parse(data, **kwargs)

    def authenticate(self, metadata: Iterable[tuple[str, Any]] | None) -> Principal:
        header = next((v for k, v in (metadata or ()) if k == AUTHORIZATION), None)
        if header is None:
            raise Unauthenticated("missing bearer token")
        if isinstance(header, bytes):
            header = header.decode(errors="replace")
        scheme, _, token = str(header).strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("malformed authorization header: expected 'Bearer <token>'")
        principal = self._by_hash.get(token_hash(token))
        if principal is None:
            raise Unauthenticated("unknown bearer token")
        if principal.expired(self._clock()):
            assert principal.expires_at is not None
            raise Unauthenticated(
                f"bearer token of {principal.name!r} expired",
                principal=principal.name,
                expired_at=principal.expires_at.isoformat(),
            )
        return principal

    def authorize(
        self, method: str, metadata: Iterable[tuple[str, Any]] | None
    ) -> Principal | None:
        """The caller, or :class:`Unauthenticated` / :class:`PermissionDenied` unless
        allowed (None for the open services)."""
        scope = required_scope(method)
        if scope is None:
            return None
        principal = self.authenticate(metadata)
        if not principal.allows(scope):
            raise PermissionDenied(
                f"{principal.name!r} lacks scope {scope.value!r} for {method}",
                principal=principal.name,
                required_scope=scope.value,
                method=method,
            )
        return principal


def _status_code(exc: MobKitError) -> grpc.StatusCode:
    if isinstance(exc, PermissionDenied):
        return grpc.StatusCode.PERMISSION_DENIED
    return grpc.StatusCode.UNAUTHENTICATED


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Token check for any grpc.aio server; denied calls never reach the handler.

    Servers made by :func:`mobkit.server.app.build_server` take the registry as
    ``ServerConfig.authorizer`` instead, so a denied call also gets the request
    id, metrics and the log line of every other failed call.
    """

    def __init__(self, registry: TokenRegistry) -> None:
        self.registry = registry

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None:
            return handler
        try:
            self.registry.authorize(details.method, details.invocation_metadata)
        except (Unauthenticated, PermissionDenied) as exc:
            return _denying(handler, exc)
        return handler


def _denying(handler: grpc.RpcMethodHandler, exc: MobKitError) -> grpc.RpcMethodHandler:
    status = rpc_status.to_status(
        status_for(_status_code(exc), exc.reason, exc.message, exc.metadata)
    )

    async def deny(_request: Any, ctx: grpc.aio.ServicerContext) -> Any:
        await ctx.abort_with_status(status)

    async def deny_stream(_request: Any, ctx: grpc.aio.ServicerContext) -> Any:
        await ctx.abort_with_status(status)
        yield  # pragma: no cover - makes this an async generator

    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_unary or handler.stream_unary:
        make = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary
            else grpc.stream_unary_rpc_method_handler
        )
        return make(deny, request_deserializer=des, response_serializer=ser)
    make = (
        grpc.unary_stream_rpc_method_handler
        if handler.unary_stream
        else grpc.stream_stream_rpc_method_handler
    )
    return make(deny_stream, request_deserializer=des, response_serializer=ser)


# -- client side -------------------------------------------------------------------


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return ((AUTHORIZATION, f"Bearer {token}"),)


def bearer_call_credentials(token: str) -> grpc.CallCredentials:
    """Call credentials adding ``authorization: Bearer <token>`` (TLS channels only)."""
    return grpc.access_token_call_credentials(token)


def _with_token(details: grpc.aio.ClientCallDetails, token: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()), *bearer_metadata(token))
    return grpc.aio.ClientCallDetails(
        method=details.method,
        timeout=details.timeout,
        metadata=metadata,
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
    )


class _UnaryUnaryBearer(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._token), request)


class _UnaryStreamBearer(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._token), request)


class _StreamStreamBearer(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(_with_token(details, self._token), request_iterator)


def bearer_token_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors sending the token on plaintext channels: unary, server- and
    bidirectional-streaming calls (the API has no client-streaming RPC)."""
    return [_UnaryUnaryBearer(token), _UnaryStreamBearer(token), _StreamStreamBearer(token)]


def read_token_file(path: str | Path) -> str:
    """A bearer token stored alone in a file (mounted secret), whitespace stripped."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise InvalidArgument("call_token_file", f"cannot read {path}: {exc.strerror}") from exc
    if not token or any(c.isspace() for c in token):
        raise InvalidArgument("call_token_file", f"{path} must hold exactly one token")
    return token


# -- issuing -------------------------------------------------------------------------


def issue_token(
    path: str | Path,
    name: str,
    scopes: Sequence[str],
    *,
    expires_at: datetime | None = None,
    runtime_instances: Sequence[str] = (),
) -> str:
    """Make a token, add its hash entry to the tokens file (created if missing), return it.

    The token is shown once to whoever asked; only its hash is stored.
    """
    path = Path(path)
    if not name.strip() or any(c in name for c in '"\\\n'):
        raise InvalidArgument("name", "must be non-empty, without quotes or backslashes")
    try:
        checked = sorted({Scope(s).value for s in scopes})
    except ValueError as exc:
        raise InvalidArgument("scopes", f"choose from read, write, admin: {list(scopes)}") from exc
    if not checked:
        raise InvalidArgument("scopes", "at least one scope")
    if expires_at is not None and expires_at.tzinfo is None:
        expires_at = expires_at.replace(tzinfo=UTC)
    token = new_token()
    digest = token_hash(token)
    entry: dict[str, Any] = {"name": name, "scopes": checked}
    if expires_at is not None:
        entry["expires_at"] = expires_at.isoformat()
    instances = sorted({parse_runtime_instance(i) for i in runtime_instances})
    if instances:
        entry["runtime_instances"] = instances
    if path.exists():
        TokenRegistry.load(path)  # refuse to append to a file we could not read back
    if path.suffix == ".json":
        data = json.loads(path.read_text()) if path.exists() else {"tokens": {}}
        data.setdefault("tokens", {})[digest] = entry
        _write_private(path, json.dumps(data, indent=2) + "\n")
    else:
        lines = [f"\n[tokens.{digest}]", f"name = {json.dumps(name)}"]
        lines.append("scopes = [" + ", ".join(json.dumps(s) for s in checked) + "]")
        if expires_at is not None:
            lines.append(f"expires_at = {expires_at.isoformat()}")
        if instances:
            lines.append(
                "runtime_instances = [" + ", ".join(json.dumps(i) for i in instances) + "]"
            )
        old = path.read_text() if path.exists() else "# MobKit bearer tokens (SHA-256 only)\n"
        _write_private(path, old + "\n".join(lines) + "\n")
    return token


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)
