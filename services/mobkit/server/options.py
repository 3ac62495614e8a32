"""What each setting of :class:`~mobkit.server.config.Settings` means, once.

``--help`` of ``mobkit serve`` / ``mobkit up`` / ``mobkit etcd`` is rendered from
this table, :meth:`Settings.validate` refuses values outside ``choices`` or ``BOUNDS``, and
``tests/test_configuration_doc.py`` keeps docs/configuration.md in step with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GROUPS = {
    "serving": "serving",
    "etcd": "etcd",
    "continuity": "continuity store",
    "orchestrator": "roster and orchestrator",
    "providers": "providers of the orchestrator (absent: in this process)",
    "console": "operator console (docs/console.md)",
    "events": "event log retention",
    "flows": "flow runs",
    "logging": "logging",
    "security": "TLS and bearer tokens",
    "runtime": "agent runtime",
}


@dataclass(frozen=True, slots=True)
class OptionDoc:
    group: str  # a key of GROUPS
    help: str
    metavar: str
    unit: str = ""  # shown after the default: "s", "bytes"
    choices: tuple[str, ...] = ()
    unset: str = ""  # what leaving an option without a default unset means


def _provider(name: str) -> OptionDoc:
    return OptionDoc(
        "providers", f"HOST:PORT of the {name} service", "HOST:PORT", unset="in-process"
    )


OPTIONS: dict[str, OptionDoc] = {
    "listen": OptionDoc("serving", "gRPC address to serve on (port 0: a free port)", "HOST:PORT"),
    "data_dir": OptionDoc(
        "serving",
        "local state: the SQLite file, module logs, and the etcd `mobkit up` runs",
        "DIR",
    ),
    "etcd_endpoints": OptionDoc(
        "etcd",
        "comma-separated etcd client URLs, every member of the cluster",
        "URL[,URL...]",
        unset="none; `mobkit up` starts a local etcd under --data-dir",
    ),
    "etcd_prefix": OptionDoc(
        "etcd", "key prefix of leases, continuity, roster and events", "PREFIX"
    ),
    "etcd_username": OptionDoc("etcd", "etcd user (etcd auth)", "NAME", unset="no etcd auth"),
    "etcd_password": OptionDoc(
        "etcd", "password of --etcd-username (never logged)", "PASSWORD", unset="none"
    ),
    "etcd_ca": OptionDoc(
        "etcd", "CA file verifying etcd's TLS certificate", "FILE", unset="plaintext"
    ),
    "etcd_cert": OptionDoc("etcd", "client certificate presented to etcd", "FILE", unset="none"),
    "etcd_key": OptionDoc("etcd", "key of --etcd-cert", "FILE", unset="none"),
    "etcd_compaction_interval": OptionDoc(
        "etcd",
        "interval of MobKit's own etcd compaction, one replica per interval (0: never)",
        "SECONDS",
        unit="s",
    ),
    "etcd_alarm_interval": OptionDoc(
        "etcd",
        "interval of checks of etcd (does it answer? is its NOSPACE alarm raised?): health, "
        "status, metric, events (0: never)",
        "SECONDS",
        unit="s",
    ),
    "continuity_backend": OptionDoc(
        "continuity",
        "where checkpoints live",
        "BACKEND",
        choices=("etcd", "sqlite", "memory"),
    ),
    "sqlite_path": OptionDoc(
        "continuity",
        "SQLite file of the sqlite backend",
        "FILE",
        unset="<data-dir>/continuity.sqlite3",
    ),
    "snapshot_limit_bytes": OptionDoc(
        "continuity",
        "largest session snapshot accepted (larger: SNAPSHOT_TOO_LARGE)",
        "BYTES",
        unit="bytes",
    ),
    "idempotency_retention": OptionDoc(
        "continuity",
        "how long a turn's receipt answers a repeated idempotency key (and a turn ticket lives)",
        "SECONDS",
        unit="s",
    ),
    "receipt_output_limit_bytes": OptionDoc(
        "continuity",
        "output a stored receipt keeps; a replay of a longer one is output_truncated",
        "BYTES",
        unit="bytes",
    ),
    "roster": OptionDoc(
        "orchestrator",
        "roster source: a TOML file (followed for edits), `etcd`, or `etcd:KEY`",
        "SOURCE",
        unset="etcd if --etcd-endpoints is given; `mobkit up`: the packaged example team",
    ),
    "lease_ttl": OptionDoc(
        "orchestrator",
        "identity lease TTL, 0.5 to 3600; a dead replica's identities move after it",
        "SECONDS",
        unit="s",
    ),
    "runtime_instance": OptionDoc(
        "orchestrator",
        "this replica's id in lease holders; keep it stable across restarts",
        "NAME",
        unset="HOST-PID-RANDOM (`mobkit up`: local)",
    ),
    "advertise": OptionDoc(
        "orchestrator",
        "address other replicas forward an identity's calls to",
        "HOST:PORT",
        unset="--listen",
    ),
    "lease_addr": _provider("lease"),
    "continuity_addr": _provider("continuity store"),
    "roster_addr": _provider("roster"),
    "topology_addr": _provider("topology"),
    "customizer_addr": _provider("customizer"),
    "runtime_addr": _provider("agent runtime"),
    "console_listen": OptionDoc(
        "console",
        "HTTP address of the operator console `mobkit up` serves (port 0: a free port; "
        "off: none); `mobkit serve console` serves on --listen if given, else here",
        "HOST:PORT|off",
    ),
    "orchestrator_addr": OptionDoc(
        "console",
        "HOST:PORT of the orchestrator `mobkit serve console` reads",
        "HOST:PORT",
        unset="127.0.0.1:7700",
    ),
    "reconcile_interval": OptionDoc(
        "orchestrator",
        "interval of full reconcile cycles (a roster change reconciles at once)",
        "SECONDS",
        unit="s",
    ),
    "resume_concurrency": OptionDoc(
        "orchestrator", "sessions created or resumed at once while activating", "N"
    ),
    "event_retention": OptionDoc(
        "events", "age of the oldest structural event kept (0: no age bound)", "SECONDS", unit="s"
    ),
    "event_retention_count": OptionDoc(
        "events", "newest events kept, in whole batches (0: no count bound)", "N"
    ),
    "event_trim_interval": OptionDoc(
        "events", "interval of retention rounds, one replica per round", "SECONDS", unit="s"
    ),
    "run_retention": OptionDoc(
        "flows", "how long a finished flow run is kept (GetRun, ListRuns)", "SECONDS", unit="s"
    ),
    "flow_max_runs": OptionDoc("flows", "flow runs one replica drives at once", "N"),
    "log_level": OptionDoc(
        "logging",
        "least severe level logged (any case)",
        "LEVEL",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    ),
    "log_format": OptionDoc(
        "logging", "stderr log lines: JSON objects or text", "FORMAT", choices=("json", "text")
    ),
    "grace": OptionDoc(
        "serving", "time in-flight calls get to finish after SIGTERM or SIGINT", "SECONDS", unit="s"
    ),
    "tls_cert": OptionDoc(
        "security",
        "certificate to serve TLS with, also presented when calling other MobKit services",
        "FILE",
        unset="plaintext",
    ),
    "tls_key": OptionDoc("security", "key of --tls-cert", "FILE", unset="none"),
    "tls_client_ca": OptionDoc(
        "security",
        "require client certificates signed by this CA (mTLS)",
        "FILE",
        unset="no client certificates",
    ),
    "tls_ca": OptionDoc(
        "security",
        "CA verifying the MobKit services this process calls",
        "FILE",
        unset="--tls-client-ca",
    ),
    "auth_tokens_file": OptionDoc(
        "security",
        "accepted bearer tokens (SHA-256 and scopes; `mobkit token create`)",
        "FILE",
        unset="no authentication",
    ),
    "call_token_file": OptionDoc(
        "security",
        "file holding the bearer token this process presents to other services",
        "FILE",
        unset="none",
    ),
    "llm_base_url": OptionDoc(
        "runtime",
        "OpenAI-compatible Chat Completions endpoint of llm agents (over [llm] base_url)",
        "URL",
        unset="[llm] base_url, else OPENAI_BASE_URL, else OpenAI's",
    ),
    "metrics_listen": OptionDoc(
        "serving", "address serving Prometheus /metrics", "HOST:PORT", unset="no metrics endpoint"
    ),
}

CONFIG_HELP = (
    "TOML file: top-level keys are these settings in snake_case, tables configure the "
    "providers (docs/configuration.md) [default: none; `mobkit up` without --roster: the "
    "packaged example's; env MOBKIT_CONFIG]"
)


_DAY = 86400.0
BOUNDS: dict[str, tuple[float, float]] = {
    # Every number that reaches a timer, a store or a buffer (inclusive, in the option's
    # unit): huge values would overflow timers or outgrow gRPC's message limit, NaN and
    # infinity would spin or never fire. 0 means "never" / "no bound" where allowed.
    "lease_ttl": (0.5, 3600),
    "etcd_compaction_interval": (0, 7 * _DAY),
    "etcd_alarm_interval": (0, 3600),
    "snapshot_limit_bytes": (1, 64 * 1024 * 1024),
    "idempotency_retention": (0.1, 30 * _DAY),
    # A receipt commits in the checkpoint's etcd txn, within etcd's 1.5 MiB request.
    "receipt_output_limit_bytes": (0, 1024 * 1024),
    "reconcile_interval": (0.1, _DAY),
    "resume_concurrency": (1, 1024),
    "event_retention": (0, 366 * _DAY),
    "event_retention_count": (0, 100_000_000),
    "event_trim_interval": (0.01, _DAY),
    "run_retention": (1, 366 * _DAY),
    "flow_max_runs": (1, 100_000),
    "grace": (0, 3600),
}


def env_name(name: str) -> str:
    return f"MOBKIT_{name.upper()}"


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def default_text(name: str, default: Any) -> str:
    """The default as docs and ``--help`` show it: value and unit, or what unset means."""
    doc = OPTIONS[name]
    if default is None or default == []:
        return doc.unset or "none"
    if isinstance(default, float) and default.is_integer():
        default = int(default)
    text = f"{default} {doc.unit}".strip()
    larger = _larger_unit(default, doc.unit) if isinstance(default, int) else None
    return f"{text} ({larger})" if larger else text


_LARGER = {"s": ((86400, "d"), (3600, "h")), "bytes": ((1024**2, "MiB"), (1024, "KiB"))}


def _larger_unit(value: int, unit: str) -> str | None:
    """86400 s is also "1 d", 67108864 bytes "64 MiB": the form a reader checks."""
    for size, name in _LARGER.get(unit, ()):
        if value >= size and value % size == 0:
            return f"{value // size} {name}"
    return None


def help_text(name: str, default: Any) -> str:
    doc = OPTIONS[name]
    choices = f"; one of {', '.join(doc.choices)}" if doc.choices else ""
    if name in BOUNDS:
        low, high = BOUNDS[name]
        choices += f"; {low:g} to {high:g} {doc.unit}".rstrip()
    return f"{doc.help}{choices} [default: {default_text(name, default)}; env {env_name(name)}]"
