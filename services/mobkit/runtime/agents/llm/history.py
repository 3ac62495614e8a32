"""The history policy: a conversation kept within a bound of messages and characters.

History is a list of Chat Completions messages (``user``, ``assistant`` with or
without ``tool_calls``, ``tool``), kept in the agent's state. It is cut into
*exchanges*, each starting at a ``user`` message and holding everything up to the
next one: the reply, the tool calls and their results. Trimming drops whole
exchanges, oldest first, so a tool result never loses the call it answers and the
model never sees a reply without its question. The newest exchange is always
kept, even when it alone is over the bound (a turn cannot answer without it).
"""

from __future__ import annotations

from typing import Any

Message = dict[str, Any]


def exchanges(messages: list[Message]) -> list[list[Message]]:
    """``messages`` cut before each ``user`` message (what precedes the first one, if
    anything, is an exchange of its own)."""
    out: list[list[Message]] = []
    for message in messages:
        if message.get("role") == "user" or not out:
            out.append([])
        out[-1].append(message)
    return out


def size(message: Message) -> int:
    """A message's characters: its text, and its tool calls' names and arguments."""
    total = len(message.get("content") or "")
    for call in message.get("tool_calls") or ():
        function = call.get("function", {})
        total += len(function.get("name", "")) + len(function.get("arguments", ""))
    return total


def trim(messages: list[Message], max_messages: int, max_chars: int) -> list[Message]:
    """The newest whole exchanges of ``messages`` within ``max_messages`` messages and
    ``max_chars`` characters (0: no such bound)."""
    kept: list[list[Message]] = []
    count = chars = 0
    for exchange in reversed(exchanges(messages)):
        count += len(exchange)
        chars += sum(size(m) for m in exchange)
        over = (max_messages and count > max_messages) or (max_chars and chars > max_chars)
        if over and kept:
            break
        kept.append(exchange)
    return [m for exchange in reversed(kept) for m in exchange]
