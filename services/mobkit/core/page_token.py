"""Page tokens (AIP-158): opaque URL-safe base64 text that any replica can decode, so
a listing continues on whichever server the next call reaches. Each listing keeps its
own payload (a keyset prefix, a JSON fingerprint); this module owns the encoding and
the refusal of a token no server issued; and the page-size rule every listing shares."""

from __future__ import annotations

import base64
import binascii

from mobkit.core.errors import InvalidArgument


def encode(payload: str, *, padded: bool = True) -> str:
    token = base64.urlsafe_b64encode(payload.encode()).decode()
    return token if padded else token.rstrip("=")


def decode(token: str, refusal: str, *, padded: bool = True) -> str:
    """The payload of ``token``; anything that is not base64 of UTF-8 text is
    INVALID_ARGUMENT ``page_token`` with ``refusal`` as its detail. An unpadded token
    (``padded=False``) may omit its trailing ``=``."""
    padding = "" if padded else "=" * (-len(token) % 4)
    try:
        return base64.urlsafe_b64decode((token + padding).encode("ascii")).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise InvalidArgument("page_token", refusal) from None


def page_size(requested: int, default: int, maximum: int) -> int:
    """AIP-158: 0 means ``default``, values above ``maximum`` are coerced to it, and a
    negative size is INVALID_ARGUMENT ``page_size``."""
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(requested or default, maximum)
