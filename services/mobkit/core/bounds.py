"""Bounds on what callers send: the names that become keys, and the integers that reach
etcd, SQLite and timers. The one owner of these limits (API.md "Input bounds").
"""

from __future__ import annotations

import unicodedata

MAX_NAME_BYTES = 256
"""Identities, runtime ids, runtime instances (holders), session ids, idempotency and
correlation keys: at most this many UTF-8 bytes. They become etcd keys and values, SQLite
keys and log fields; 256 leaves every derived key (``<prefix>/continuity/receipts/<identity>/…``)
far below etcd's request limit and every error that echoes one inside gRPC's 16 KiB
metadata limit."""

INT64_MAX = 2**63 - 1
"""etcd revisions and leases, SQLite integers and protobuf ``int64`` are signed 64-bit:
every ``uint64`` a request carries (fencing tokens, generations, checkpoint versions,
cursors) must fit."""

# Characters refused in names besides whitespace: controls (Cc: NUL, BEL, ESC, DEL,
# U+0085, ...), format characters (Cf: U+200B, U+200E, U+FEFF, ...) and lone surrogates.
# Unassigned and private-use code points are allowed, so the rule does not change with
# the Unicode version of the Python that checks it.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})

ECHO_CHARS = 64
"""How much of an offending value an error message repeats."""


def utf8_length(value: str) -> int:
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


def length_problem(value: str, limit: int = MAX_NAME_BYTES) -> str | None:
    # Four bytes per character at most: the encode is needed only near the limit.
    if len(value) * 4 <= limit:
        return None
    size = utf8_length(value)
    return f"must be at most {limit} UTF-8 bytes (got {size})" if size > limit else None


def control_problem(value: str) -> str | None:
    """Why ``value`` holds a control or format character, or None. ``isprintable`` is
    the fast path: it is True for almost every name, and False for every refused one."""
    if value.isprintable():
        return None
    for index, char in enumerate(value):
        if unicodedata.category(char) in _REFUSED_CATEGORIES:
            return (
                f"must not contain control or format characters "
                f"(U+{ord(char):04X} at index {index})"
            )
    return None


def name_problem(value: str, limit: int = MAX_NAME_BYTES) -> str | None:
    """Length and character rules of a free-text name (a holder, a key): None if fine."""
    return length_problem(value, limit) or control_problem(value)


def echo(value: str, limit: int = ECHO_CHARS) -> str:
    """``repr(value)``, shortened, for error messages: a hostile 10 KB input is never
    repeated whole."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({utf8_length(value)} bytes)"


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes at a character boundary, marked
    with an ellipsis when cut."""
    if utf8_length(text) <= limit:
        return text
    cut = text.encode("utf-8", "surrogatepass")[: max(limit - 3, 0)]
    return cut.decode("utf-8", "ignore") + "…"
