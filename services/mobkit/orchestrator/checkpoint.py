"""What a checkpoint stores: the runtime's session snapshot plus recent receipts.

Receipts ride in the same snapshot as the state change they acknowledge, so a
repeated idempotency key finds its original receipt after a restart or a
failover exactly when the turn itself was checkpointed — never one without
the other.
"""

from __future__ import annotations

import base64
import json
from collections import OrderedDict
from typing import Any

from mobkit.core.errors import StoreCorruption
from mobkit.core.identity import AgentIdentity, SessionId
from mobkit.core.types import DispatchReceipt, SessionSnapshot

ENVELOPE_FORMAT = 1
MAX_RECEIPTS = 256


def _receipt_to_json(r: DispatchReceipt) -> dict[str, Any]:
    # Field by field: dataclasses.asdict deep-copies, and a checkpoint carries up to
    # MAX_RECEIPTS receipts on every turn.
    return {
        "identity": r.identity,
        "session_id": r.session_id,
        "fencing_token": r.fencing_token,
        "checkpoint_version": r.checkpoint_version,
        "output": r.output,
        "structured_output": r.structured_output,
        "correlation_id": r.correlation_id,
    }


def _receipt_from_json(d: dict[str, Any]) -> DispatchReceipt:
    return DispatchReceipt(
        identity=AgentIdentity(d["identity"]),
        session_id=SessionId(d["session_id"]),
        fencing_token=int(d["fencing_token"]),
        checkpoint_version=int(d["checkpoint_version"]),
        output=d["output"],
        structured_output=d.get("structured_output"),
        correlation_id=d.get("correlation_id"),
    )


def encode(
    runtime_snapshot: SessionSnapshot, receipts: OrderedDict[str, DispatchReceipt]
) -> SessionSnapshot:
    body = {
        "format": ENVELOPE_FORMAT,
        "runtime": base64.b64encode(runtime_snapshot.data).decode("ascii"),
        "receipts": [[k, _receipt_to_json(r)] for k, r in list(receipts.items())[-MAX_RECEIPTS:]],
    }
    return SessionSnapshot(json.dumps(body, separators=(",", ":")).encode())


def decode(
    identity: str, snapshot: SessionSnapshot
) -> tuple[SessionSnapshot, OrderedDict[str, DispatchReceipt]]:
    try:
        body = json.loads(snapshot.data)
        if body.get("format") != ENVELOPE_FORMAT:
            raise ValueError(f"unknown checkpoint format {body.get('format')!r}")
        runtime = SessionSnapshot(base64.b64decode(body["runtime"], validate=True))
        receipts = OrderedDict((k, _receipt_from_json(r)) for k, r in body["receipts"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreCorruption(f"undecodable checkpoint: {exc}", identity) from exc
    return runtime, receipts


def remember(
    receipts: OrderedDict[str, DispatchReceipt], key: str, receipt: DispatchReceipt
) -> None:
    receipts[key] = receipt
    while len(receipts) > MAX_RECEIPTS:
        receipts.popitem(last=False)
