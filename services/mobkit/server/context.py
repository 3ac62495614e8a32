"""Per-call context for structured logs: request id, and what the call is about."""

from __future__ import annotations

from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("mobkit_request_id", default="-")
rpc_method: ContextVar[str] = ContextVar("mobkit_rpc_method", default="-")
caller: ContextVar[object | None] = ContextVar("mobkit_caller", default=None)
"""What the call's authorizer returned (a ``security.auth.Principal``); None without auth."""
