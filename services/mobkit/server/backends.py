"""Which backends each service of a process cannot work without.

A service's health follows the conditions of exactly these backends (etcd out of
space or unreachable, SQLite failing), and a process checks at start that etcd
answers only if one of its services uses it.
"""

from __future__ import annotations

from collections.abc import Iterable

from mobkit.server.config import PROVIDERS, Settings

ETCD = "etcd"
SQLITE = "sqlite"

_CONTINUITY = {"etcd": frozenset({ETCD}), "sqlite": frozenset({SQLITE})}


def service_backends(key: str, settings: Settings) -> frozenset[str]:
    """The backends of service ``key`` (``lease``, ..., ``orchestrator``) as configured."""
    if key == "lease":
        return frozenset({ETCD})
    if key == "continuity":
        return _CONTINUITY.get(settings.continuity_backend, frozenset())
    if key == "roster":
        from mobkit.roster.service import in_etcd

        return frozenset({ETCD}) if in_etcd(settings.roster) else frozenset()
    if key == "orchestrator":
        # Its event log and replica registry, plus what its in-process providers use.
        local = [p for p in PROVIDERS if not settings.provider_addr(p)]
        return frozenset({ETCD}).union(*(service_backends(p, settings) for p in local))
    return frozenset()


def uses_etcd(keys: Iterable[str], settings: Settings) -> bool:
    return any(ETCD in service_backends(k, settings) for k in keys)
