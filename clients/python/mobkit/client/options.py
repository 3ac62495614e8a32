"""How a client reaches MobKit: address, TLS, bearer token, deadline, retry policy."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mobkit.security.auth import read_token_file
from mobkit.security.tls import ClientTLS

DEFAULT_ADDRESS = "127.0.0.1:7700"
"""Where ``mobkit up`` listens by default."""

DEFAULT_TIMEOUT = 10.0
"""Default deadline of one call, retries included (seconds)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for calls that failed with UNAVAILABLE.

    Only idempotent calls are retried (see :mod:`mobkit.client.retry`), and never
    past the call's deadline. ``max_attempts`` counts the first attempt, so 1 means
    no retry. Each delay is ``initial_backoff * multiplier**n``, capped at
    ``max_backoff``, then spread by ``±jitter`` (a fraction) so that many clients
    do not retry in lockstep.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff < 0 or self.max_backoff < self.initial_backoff:
            raise ValueError("need 0 <= initial_backoff <= max_backoff")
        if self.multiplier < 1 or not 0 <= self.jitter < 1:
            raise ValueError("need multiplier >= 1 and 0 <= jitter < 1")

    def backoff(self, retry: int) -> float:
        """The delay before retry number ``retry`` (0 for the first retry)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier**retry)
        return base * (1 + self.jitter * (2 * random.random() - 1))


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True)
class ClientOptions:
    """Connection options shared by every client object.

    ``timeout`` is the default deadline of each unary call, retries included
    (``None`` is refused: every call has a deadline). Streams (``events``) have no
    deadline. ``token`` is sent as ``authorization: Bearer <token>``; it never
    appears in ``repr``.
    """

    address: str = DEFAULT_ADDRESS
    tls: ClientTLS | None = None
    token: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    channel_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ClientOptions:
        """Options from ``MOBKIT_*`` variables, then ``overrides`` (None values ignored).

        ``MOBKIT_ADDR``; ``MOBKIT_TOKEN`` or ``MOBKIT_CALL_TOKEN_FILE``;
        ``MOBKIT_TLS_CA`` (falling back to ``MOBKIT_TLS_CLIENT_CA``),
        ``MOBKIT_TLS_CERT``, ``MOBKIT_TLS_KEY``, ``MOBKIT_TLS_SERVER_NAME`` — the
        same variables a MobKit process uses for its own calls, so a client run next
        to a service reaches it with the service's environment.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("MOBKIT_ADDR"):
            values["address"] = env["MOBKIT_ADDR"]
        if env.get("MOBKIT_TOKEN"):
            values["token"] = env["MOBKIT_TOKEN"].strip()
        elif env.get("MOBKIT_CALL_TOKEN_FILE"):
            values["token"] = read_token_file(env["MOBKIT_CALL_TOKEN_FILE"])
        tls = tls_from(
            ca_file=env.get("MOBKIT_TLS_CA") or env.get("MOBKIT_TLS_CLIENT_CA"),
            cert_file=env.get("MOBKIT_TLS_CERT"),
            key_file=env.get("MOBKIT_TLS_KEY"),
            server_name=env.get("MOBKIT_TLS_SERVER_NAME"),
        )
        if tls is not None:
            values["tls"] = tls
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def tls_from(
    *,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    server_name: str | None = None,
    force: bool = False,
) -> ClientTLS | None:
    """TLS settings if any is given (or ``force``: TLS with the system roots), else None."""
    if not (force or ca_file or cert_file or key_file or server_name):
        return None
    return ClientTLS(
        ca_file=ca_file or None,
        cert_file=cert_file or None,
        key_file=key_file or None,
        server_name=server_name or None,
    )
