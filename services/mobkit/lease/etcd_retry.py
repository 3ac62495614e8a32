"""Retry of idempotent etcd calls while etcd is briefly unreachable.

Every call the lease backend makes is safe to repeat: create-if-absent returns the
caller's own key on a second try, deletes and reads are conditional, keepalives are
idempotent. Retrying inside a small time budget rides out a leader election or a
member restart; past the budget the caller sees ``EtcdUnavailable`` (UNAVAILABLE).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from mobkit.etcd.errors import EtcdUnavailable

T = TypeVar("T")

FIRST_DELAY = 0.05
MAX_DELAY = 0.5


async def call_with_retry(
    call: Callable[[], Awaitable[T]],
    *,
    budget: float,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``await call()``, again after a backoff on ``EtcdUnavailable`` until ``budget``
    seconds have passed (each attempt keeps the client's own deadline)."""
    deadline = clock() + budget
    delay = FIRST_DELAY
    while True:
        try:
            return await call()
        except EtcdUnavailable:
            if clock() + delay > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY)
