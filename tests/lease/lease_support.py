"""Helpers shared by the lease tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mobkit.lease.domain import LeaseProvider

WAIT = 15.0
"""Upper bound for anything a lease test waits for."""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Backend:
    name: str
    provider: LeaseProvider
    pass_time: Callable[[float], Awaitable[None]]
    """Let ``seconds`` of lease time go by (moves the fake clock, or sleeps)."""
