"""Settings from flags, ``MOBKIT_*`` environment variables and a TOML file.

Precedence, lowest first: defaults, the TOML file given by ``--config``, the
environment (``MOBKIT_ETCD_ENDPOINTS`` for ``--etcd-endpoints``), flags. Every
option is declared once, in ``Settings``; flags and variable names derive
from the field names, and what each means is in :mod:`mobkit.server.options`.
The TOML file's tables (``SECTIONS``: ``[topology]``, ``[customizer]``, ...)
are provider configuration, kept as-is in ``Settings.sections``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import tomllib
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mobkit.core.errors import InvalidArgument
from mobkit.server import options
from mobkit.server.addresses import check_addresses

PROVIDERS = ("lease", "continuity", "roster", "topology", "customizer", "runtime")
# The tables of a --config file, each read by the provider of the same name (runtime:
# [profiles] and [llm]; the orchestrator: [modules]). Any other table is a typo, refused.
SECTIONS = ("profiles", "roster", "topology", "customizer", "continuity", "modules", "llm")


@dataclass
class Settings:
    listen: str = "127.0.0.1:7700"
    data_dir: str = ".mobkit"
    etcd_endpoints: list[str] = field(default_factory=list)
    etcd_prefix: str = "/mobkit"
    etcd_username: str | None = None
    etcd_password: str | None = field(default=None, repr=False)
    etcd_ca: str | None = None
    etcd_cert: str | None = None
    etcd_key: str | None = None
    # Seconds between MobKit's own etcd compactions (one replica compacts); 0: never.
    etcd_compaction_interval: float = 60.0
    # Seconds between checks of etcd: reachable? NOSPACE alarm? (health, status); 0: never.
    etcd_alarm_interval: float = 5.0
    continuity_backend: str = "sqlite"
    sqlite_path: str | None = None
    snapshot_limit_bytes: int = 64 * 1024 * 1024
    # Seconds a turn's receipt answers a repeated idempotency key (then the store drops it).
    idempotency_retention: float = 24 * 3600.0
    # A receipt keeps at most this much of a turn's output (a replay returns it truncated).
    receipt_output_limit_bytes: int = 64 * 1024
    roster: str | None = None
    lease_ttl: float = 10.0
    runtime_instance: str | None = None
    advertise: str | None = None
    lease_addr: str | None = None
    continuity_addr: str | None = None
    roster_addr: str | None = None
    topology_addr: str | None = None
    customizer_addr: str | None = None
    runtime_addr: str | None = None
    # The operator console: where `mobkit up` serves it ("off": not at all), and the
    # orchestrator `mobkit serve console` reads.
    console_listen: str = "127.0.0.1:8780"
    orchestrator_addr: str | None = None
    reconcile_interval: float = 30.0
    resume_concurrency: int = 16
    # The event log's window (see docs/architecture.md, "Events"): events older than
    # event_retention seconds, or beyond the newest event_retention_count, are trimmed
    # every event_trim_interval seconds by one replica; 0 = no such bound.
    event_retention: float = 7 * 24 * 3600.0
    event_retention_count: int = 100_000
    event_trim_interval: float = 60.0
    # Flow runs (docs/flows.md): a finished run is kept run_retention seconds; one
    # replica drives at most flow_max_runs runs at once.
    run_retention: float = 7 * 24 * 3600.0
    flow_max_runs: int = 256
    log_level: str = "INFO"
    log_format: str = "json"
    grace: float = 5.0
    # TLS: serve it with tls_cert + tls_key; tls_client_ca also demands client certs (mTLS).
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    # CA verifying the MobKit servers this process calls (default: tls_client_ca).
    tls_ca: str | None = None
    # Accepted bearer tokens (SHA-256 + scopes, see mobkit.security.auth); unset: no auth.
    auth_tokens_file: str | None = None
    # File holding the bearer token this process presents to other MobKit services.
    call_token_file: str | None = None
    # HOST:PORT serving Prometheus /metrics; unset: no metrics endpoint.
    metrics_listen: str | None = None
    # Chat Completions endpoint of llm agents (over [llm] base_url and OPENAI_BASE_URL).
    llm_base_url: str | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    config_path: str | None = None

    def instance_id(self) -> str:
        """This replica's runtime instance id (stable when configured)."""
        if self.runtime_instance is None:
            self.runtime_instance = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        return self.runtime_instance

    def resolved_sqlite_path(self) -> Path:
        if self.sqlite_path:
            return Path(self.sqlite_path)
        return Path(self.data_dir) / "continuity.sqlite3"

    def provider_addr(self, provider: str) -> str | None:
        value: str | None = getattr(self, f"{provider}_addr")
        return value

    def validate(self) -> Settings:
        self.log_level = self.log_level.upper()  # logging's names, in any case on input
        for name, doc in options.OPTIONS.items():
            value = getattr(self, name)
            if doc.choices and value not in doc.choices:
                raise InvalidArgument(
                    name, f"must be one of {', '.join(doc.choices)} (got {value!r})"
                )
        for name, (low, high) in options.BOUNDS.items():
            value = getattr(self, name)
            # `not low <= value <= high` also refuses NaN, which compares false to all.
            if not low <= value <= high:
                unit = options.OPTIONS[name].unit
                detail = f"must be between {low:g} and {high:g} {unit}".rstrip()
                raise InvalidArgument(name, detail)
        check_addresses(self)
        return self


_FIELDS = {
    f.name: f for f in dataclasses.fields(Settings) if f.name not in ("sections", "config_path")
}


def _is_list(name: str) -> bool:
    return "list" in str(_FIELDS[name].type)


def _coerce(name: str, value: Any) -> Any:
    kind = str(_FIELDS[name].type)
    if value is None:
        return None
    if _is_list(name):
        items = value if isinstance(value, list) else str(value).split(",")
        return [str(v).strip() for v in items if str(v).strip()]
    try:
        if kind.startswith("float"):
            return float(value)
        if kind.startswith("int"):
            return int(value)
    except ValueError as exc:
        raise InvalidArgument(name, f"not a number: {value!r}") from exc
    return str(value)


def default_of(name: str) -> Any:
    """The value a setting has when nothing sets it."""
    return getattr(Settings(), name)


def add_arguments(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """Add one ``--flag`` per setting, or per setting in ``names`` (default None so
    unset flags do not override), in the groups and with the help of :mod:`options`."""
    parser.add_argument("--config", metavar="FILE", help=options.CONFIG_HELP)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name in names if names is not None else _FIELDS:
        doc = options.OPTIONS[name]
        if doc.group not in groups:
            groups[doc.group] = parser.add_argument_group(options.GROUPS[doc.group])
        groups[doc.group].add_argument(
            options.flag(name),
            dest=name,
            default=None,
            metavar=doc.metavar,
            help=options.help_text(name, default_of(name)),
        )


def load_settings(
    args: argparse.Namespace | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    config_path = getattr(args, "config", None) or env.get("MOBKIT_CONFIG")
    if config_path:
        try:
            data = tomllib.loads(Path(config_path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InvalidArgument("config", f"{config_path}: {exc}") from exc
        for key, value in data.items():
            name = key.replace("-", "_")
            if isinstance(value, dict) and name in SECTIONS:
                sections[name] = value  # a table is a section, even [roster] (not --roster)
            elif isinstance(value, dict):
                raise InvalidArgument(
                    "config",
                    f"unknown section [{key}] in {config_path} (expected {', '.join(SECTIONS)})",
                )
            elif name in _FIELDS:
                values[name] = _coerce(name, value)
            else:
                raise InvalidArgument("config", f"unknown setting {key!r} in {config_path}")
    for name in _FIELDS:
        raw = env.get(f"MOBKIT_{name.upper()}")
        if raw is not None:
            values[name] = _coerce(name, raw)
    if args is not None:
        for name in _FIELDS:
            raw = getattr(args, name, None)
            if raw is not None:
                values[name] = _coerce(name, raw)
    for name, value in (overrides or {}).items():
        values[name] = value
    sections = {**sections, **values.pop("sections", {})}
    return Settings(**values, sections=sections, config_path=config_path).validate()


def split_hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidArgument("listen", f"expected HOST:PORT, got {value!r}")
    return host.strip("[]"), int(port)


def with_port(listen: str, port: int) -> str:
    host, _ = split_hostport(listen)
    return f"{host}:{port}"


def parse_endpoints(values: Sequence[str]) -> list[str]:
    return [v for v in values if v]
