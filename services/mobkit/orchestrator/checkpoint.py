"""What a checkpoint stores, and how a turn's receipt is kept beside it.

A checkpoint is the runtime's session snapshot behind a 4-byte format tag, nothing
else: the snapshot's bytes stay as the runtime wrote them, so the store's
content-defined chunking finds what a turn left unchanged.

A turn's receipt is saved with its checkpoint, in the same atomic store write
(``ContinuityStore.save_session_snapshot(..., receipt=...)``), under the request's
idempotency key, and the store keeps it for its retention however many turns follow. A
repeated key therefore finds its receipt after a restart or a failover exactly when the
turn itself was checkpointed, never one without the other. A stored receipt keeps at
most ``output_limit`` bytes of output; a replay of a longer one answers the first bytes
with ``output_truncated``.

Format 1 (a JSON envelope carrying the last 256 receipts inside the snapshot) is still
read: its receipts are honoured by the replica that loads it, until that identity's
next activation elsewhere (they were never stored beside it).
"""

from __future__ import annotations

import base64
import json
from collections import OrderedDict
from typing import Any

from mobkit.core.errors import StoreCorruption
from mobkit.core.identity import AgentIdentity, FencingToken, SessionId
from mobkit.core.types import DispatchReceipt, SessionSnapshot, TokenUsage

FORMAT_TAG = b"MKC2"
LEGACY_RECEIPTS = 256
"""What a format-1 checkpoint carried at most (its receipts stay in memory)."""
DEFAULT_OUTPUT_LIMIT_BYTES = 64 * 1024

_LEGACY_FORMAT = 1


def encode(runtime_snapshot: SessionSnapshot) -> SessionSnapshot:
    return SessionSnapshot(FORMAT_TAG + runtime_snapshot.data)


def decode(
    identity: str, snapshot: SessionSnapshot
) -> tuple[SessionSnapshot, OrderedDict[str, DispatchReceipt]]:
    """The runtime snapshot, and the receipts a format-1 checkpoint carried."""
    data = snapshot.data
    if data[:4] == FORMAT_TAG:
        return SessionSnapshot(data[4:]), OrderedDict()
    try:
        body = json.loads(data)
        if body.get("format") != _LEGACY_FORMAT:
            raise ValueError(f"unknown checkpoint format {body.get('format')!r}")
        runtime = SessionSnapshot(base64.b64decode(body["runtime"], validate=True))
        receipts = OrderedDict((k, _from_json(r)) for k, r in body["receipts"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreCorruption(f"undecodable checkpoint: {exc}", identity) from exc
    return runtime, receipts


def encode_receipt(receipt: DispatchReceipt, output_limit: int) -> bytes:
    """A receipt as stored: JSON, its output cut to ``output_limit`` UTF-8 bytes (and a
    structured output dropped when it alone exceeds the limit)."""
    body = _to_json(receipt)
    raw = receipt.output.encode()
    if len(raw) > output_limit:
        body["output"] = raw[:output_limit].decode(errors="ignore")
        body["output_truncated"] = True
    if receipt.structured_output is not None:
        structured = json.dumps(receipt.structured_output, separators=(",", ":"))
        if len(structured.encode()) > output_limit:
            body["structured_output"] = None
            body["output_truncated"] = True
    return json.dumps(body, separators=(",", ":")).encode()


def as_stored(receipt: DispatchReceipt, output_limit: int) -> DispatchReceipt:
    """``receipt`` as a replay answers it (what :func:`encode_receipt` keeps)."""
    if receipt.structured_output is None and len(receipt.output) * 4 <= output_limit:
        return receipt  # kept whole: at most 4 UTF-8 bytes a character
    return decode_receipt(receipt.identity, encode_receipt(receipt, output_limit))


def decode_receipt(identity: str, data: bytes) -> DispatchReceipt:
    try:
        return _from_json(json.loads(data))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StoreCorruption(f"undecodable receipt: {exc}", identity) from exc


def remember(
    receipts: OrderedDict[str, DispatchReceipt], key: str, receipt: DispatchReceipt
) -> None:
    receipts[key] = receipt
    receipts.move_to_end(key)
    while len(receipts) > LEGACY_RECEIPTS:
        receipts.popitem(last=False)


def _to_json(r: DispatchReceipt) -> dict[str, Any]:
    return {
        "identity": r.identity,
        "session_id": r.session_id,
        "fencing_token": r.fencing_token,
        "checkpoint_version": r.checkpoint_version,
        "output": r.output,
        "structured_output": r.structured_output,
        "correlation_id": r.correlation_id,
        "output_truncated": r.output_truncated,
        **({"usage": [r.usage.prompt_tokens, r.usage.completion_tokens]} if r.usage else {}),
    }


def _from_json(d: dict[str, Any]) -> DispatchReceipt:
    return DispatchReceipt(
        identity=AgentIdentity(d["identity"]),
        session_id=SessionId(d["session_id"]),
        fencing_token=FencingToken(int(d["fencing_token"])),
        checkpoint_version=int(d["checkpoint_version"]),
        output=str(d["output"]),
        structured_output=d.get("structured_output"),
        correlation_id=d.get("correlation_id"),
        output_truncated=bool(d.get("output_truncated", False)),
        usage=TokenUsage(*map(int, d["usage"])) if d.get("usage") else None,
    )
