"""Structured logging: one JSON object per line, with the call's request id.

Identity and fencing token travel as ``extra={"identity": ..., "fencing_token": ...}``.
Secrets never reach a record: known secret-bearing keys are masked, and bearer
tokens (``Bearer ...``, MobKit's ``mbk_...``) are blotted out of messages and
tracebacks in case one slips into an exception text.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from mobkit.server import context as callctx

_EXTRA_KEYS = ("identity", "fencing_token", "session_id", "runtime_instance", "service", "event")
_SECRET_KEYS = ("password", "token", "authorization", "secret", "key")
# Libraries whose DEBUG records narrate their own machinery (grpc: "Loaded running
# loop" on every call): they log from INFO up, so --log-level DEBUG shows MobKit.
QUIET_LOGGERS = ("grpc",)
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",;]+|\bmbk_[A-Za-z0-9_-]+")


def redact(text: str) -> str:
    return _BEARER.sub(lambda m: f"{m.group(1)}***" if m.group(1) else "mbk_***", text)


def _masked(key: str, value: Any) -> Any:
    secret = key != "fencing_token" and any(s in key.lower() for s in _SECRET_KEYS)
    return "***" if secret else value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
            "request_id": callctx.request_id.get(),
            "method": callctx.rpc_method.get(),
        }
        for key in _EXTRA_KEYS:
            if hasattr(record, key):
                out[key] = _masked(key, getattr(record, key))
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(root.level, logging.INFO))
