"""Stateless page tokens for ComputeEdges.

A token names the last edge of the page it follows and the fingerprint of the
request (policy, targets, labels read). Any server can continue from it; a
token presented with different targets or context is INVALID_ARGUMENT rather
than a silently inconsistent listing.
"""

from __future__ import annotations

import json

from mobkit.core import page_token
from mobkit.core.errors import InvalidArgument

VERSION = 1
_NOT_OURS = "not a token from a previous page"


def encode(fingerprint: str, a: str, b: str) -> str:
    raw = json.dumps({"v": VERSION, "f": fingerprint, "a": a, "b": b}, separators=(",", ":"))
    return page_token.encode(raw, padded=False)


def decode(token: str, fingerprint: str) -> tuple[str, str]:
    """The last edge served, after checking the token belongs to this request."""
    try:
        data = json.loads(page_token.decode(token, _NOT_OURS, padded=False))
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("v") != VERSION:
        raise InvalidArgument("page_token", _NOT_OURS)
    a, b, f = data.get("a"), data.get("b"), data.get("f")
    if not (isinstance(a, str) and isinstance(b, str) and isinstance(f, str)):
        raise InvalidArgument("page_token", _NOT_OURS)
    if f != fingerprint:
        raise InvalidArgument(
            "page_token", "target_identities or context changed since the previous page"
        )
    return a, b
