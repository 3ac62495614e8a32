"""``mobkit serve roster``: the configured roster source behind the RosterService.

Which source (``--roster`` / ``MOBKIT_ROSTER``):

* a path: that TOML file, polled for edits;
* ``etcd`` or ``etcd:<key>``: the roster document in etcd, at
  ``<etcd_prefix>/roster/document`` unless a key is given;
* unset: etcd when etcd endpoints are configured, else an error.

The ``[roster]`` section of the config file may hold ``profiles`` (profile ->
agent kind, merged under each roster's own ``[profiles]``) and
``poll_interval`` (seconds between file polls, default 0.25).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mobkit.core.errors import InvalidArgument, RosterInvalid
from mobkit.gen.roster.v1 import roster_service_pb2_grpc as pb_grpc
from mobkit.roster.document import parse_profiles
from mobkit.roster.etcd_source import EtcdRoster, roster_key
from mobkit.roster.file_source import DEFAULT_POLL_INTERVAL, FileRoster
from mobkit.roster.servicer import ERRORS, SERVICE_NAME, RosterServicer
from mobkit.server.app import ServiceRegistration
from mobkit.server.config import Settings
from mobkit.server.resources import Resources

SECTION_KEYS = frozenset({"profiles", "poll_interval"})


@dataclass(frozen=True)
class RosterConfig:
    path: str | None = None  # None: etcd
    etcd_key: str | None = None
    poll_interval: float = DEFAULT_POLL_INTERVAL
    profiles: Mapping[str, str] = field(default_factory=dict)


def in_etcd(source: str | None) -> bool:
    """Whether the roster source setting names etcd (unset does, when etcd is configured)."""
    return source is None or source == "etcd" or source.startswith("etcd:")


def roster_config(settings: Settings) -> RosterConfig:
    section: Mapping[str, Any] = settings.sections.get("roster", {})
    for key in section:
        if key not in SECTION_KEYS:
            expected = ", ".join(sorted(SECTION_KEYS))
            raise InvalidArgument(f"roster.{key}", f"unknown setting (expected {expected})")
    try:
        profiles = parse_profiles(section.get("profiles", {}))
    except RosterInvalid as exc:
        raise InvalidArgument("roster.profiles", exc.detail) from None
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
            profiles=profiles,
        )
    return RosterConfig(path=source, poll_interval=float(interval), profiles=profiles)


async def open_roster(settings: Settings, resources: Resources) -> FileRoster | EtcdRoster:
    """The configured source, read once and followed in the background."""
    config = roster_config(settings)
    if config.path is not None:
        return await FileRoster(
            config.path, poll_interval=config.poll_interval, configured_profiles=config.profiles
        ).start()
    assert config.etcd_key is not None
    etcd = await resources.etcd()
    return await EtcdRoster(etcd, config.etcd_key, configured_profiles=config.profiles).start()


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
