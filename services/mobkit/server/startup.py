"""Checks a process makes before it starts anything, each failing in one line.

``mobkit serve`` and ``mobkit up`` exit 2 with the message of a
:class:`StartupError` (or of a bad setting), never with a traceback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mobkit.etcd.errors import EtcdAuthError, EtcdError, unreachable

if TYPE_CHECKING:
    from mobkit.server.resources import Resources

PROBE_TIMEOUT = 3.0
"""Seconds etcd has to answer at start. A wrong endpoint would otherwise show only
as the first write's deadline, after the roster was loaded and modules started."""


class StartupError(Exception):
    """A process cannot start; the message is the one line the operator sees."""


async def check_etcd_answers(resources: Resources) -> None:
    """etcd answers a status call within :data:`PROBE_TIMEOUT`, or :class:`StartupError`
    naming the endpoints."""
    endpoints = resources.settings.etcd_endpoints
    try:
        client = await resources.etcd()  # authenticates now when credentials are set
        await client.status(timeout=PROBE_TIMEOUT, wait_for_ready=False)
    except EtcdAuthError as exc:
        raise StartupError(
            f"etcd at {', '.join(endpoints)} refused the credentials ({exc})"
        ) from None
    except EtcdError as exc:
        raise StartupError(f"etcd {unreachable(endpoints, exc)}") from None
