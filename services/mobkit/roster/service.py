"""``mobkit serve roster``: the configured roster source behind the RosterService.

Which source (``--roster`` / ``MOBKIT_ROSTER``):

* a path: that TOML file, polled for edits;
* ``etcd`` or ``etcd:<key>``: the roster document in etcd, at
  ``<etcd_prefix>/roster/document`` unless a key is given;
* unset: etcd when etcd endpoints are configured, else an error.

The ``[roster]`` section of the config file may hold ``profiles`` (profile ->
agent kind, merged under each roster's own ``[profiles]``), ``poll_interval``
(seconds between file polls, default 0.25) and ``agent_kinds``: the agent kinds
profiles may name. By default those are the kinds MobKit's reference runtime
offers with this configuration (its built-in kinds and the ``[profiles]``
section's names); list them when ``--runtime-addr`` points at another runtime.
A roster, first read or reloaded, whose profile names another kind is rejected.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mobkit.core.errors import InvalidArgument, RosterInvalid
from mobkit.gen.roster.v1 import roster_service_pb2_grpc as pb_grpc
from mobkit.roster.document import RosterRules, parse_profiles
from mobkit.roster.etcd_source import EtcdRoster, roster_key
from mobkit.roster.file_source import DEFAULT_POLL_INTERVAL, FileRoster
from mobkit.roster.servicer import ERRORS, SERVICE_NAME, RosterServicer
from mobkit.runtime.service import agent_kinds
from mobkit.server.app import ServiceRegistration
from mobkit.server.config import Settings
from mobkit.server.resources import Resources

SECTION_KEYS = frozenset({"profiles", "poll_interval", "agent_kinds"})


@dataclass(frozen=True)
class RosterConfig:
    path: str | None = None  # None: etcd
    etcd_key: str | None = None
    poll_interval: float = DEFAULT_POLL_INTERVAL
    rules: RosterRules = field(default_factory=RosterRules)


def in_etcd(source: str | None) -> bool:
    """Whether the roster source setting names etcd (unset does, when etcd is configured)."""
    return source is None or source == "etcd" or source.startswith("etcd:")


def _section(settings: Settings) -> Mapping[str, Any]:
    section: Any = settings.sections.get("roster", {})
    if not isinstance(section, Mapping):
        raise InvalidArgument("roster", "must be a table ([roster])")
    for key in section:
        if key not in SECTION_KEYS:
            expected = ", ".join(sorted(SECTION_KEYS))
            raise InvalidArgument(f"roster.{key}", f"unknown setting (expected {expected})")
    return section


def roster_rules(settings: Settings) -> RosterRules:
    """What every roster of this configuration is checked against (module doc)."""
    section = _section(settings)
    try:
        profiles = parse_profiles(section.get("profiles", {}))
    except RosterInvalid as exc:
        raise InvalidArgument("roster.profiles", exc.detail) from None
    kinds = section.get("agent_kinds")
    if kinds is None:
        return RosterRules(profiles, agent_kinds(settings))
    if not isinstance(kinds, list) or not all(isinstance(k, str) and k for k in kinds):
        raise InvalidArgument("roster.agent_kinds", "must be an array of agent kind names")
    return RosterRules(profiles, frozenset(kinds))


def roster_config(settings: Settings) -> RosterConfig:
    section = _section(settings)
    rules = roster_rules(settings)
    interval = section.get("poll_interval", DEFAULT_POLL_INTERVAL)
    if not isinstance(interval, int | float) or not 0 < interval <= 60:
        raise InvalidArgument("roster.poll_interval", "must be a number of seconds in (0, 60]")
    source = settings.roster
    if source is None and not settings.etcd_endpoints:
        raise InvalidArgument(
            "roster", "no roster source: give --roster FILE, or --etcd-endpoints to use etcd"
        )
    if in_etcd(source):
        key = source[len("etcd:") :] if source and source.startswith("etcd:") else ""
        return RosterConfig(
            etcd_key=key or roster_key(settings.etcd_prefix),
            poll_interval=float(interval),
            rules=rules,
        )
    return RosterConfig(path=source, poll_interval=float(interval), rules=rules)


async def open_roster(settings: Settings, resources: Resources) -> FileRoster | EtcdRoster:
    """The configured source, read once and followed in the background."""
    config = roster_config(settings)
    if config.path is not None:
        return await FileRoster(
            config.path, poll_interval=config.poll_interval, rules=config.rules
        ).start()
    assert config.etcd_key is not None
    etcd = await resources.etcd()
    return await EtcdRoster(etcd, config.etcd_key, rules=config.rules).start()


async def build(settings: Settings, resources: Resources) -> ServiceRegistration:
    provider = await open_roster(settings, resources)
    resources.providers["roster"] = provider  # the in-process orchestrator uses it directly
    resources.on_close(provider.close)  # also stops it when a later service fails to build
    servicer = RosterServicer(provider)
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: pb_grpc.add_RosterServiceServicer_to_server(servicer, server),
        ERRORS,
        on_stop=[provider.close],
    )
