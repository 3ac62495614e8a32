"""The ``summarize`` history strategy: exchanges the bound drops are folded into a
running summary, which later turns send as part of the system message.

The summary is written by the same model, in one more request (no tools, not
streamed to the turn's listeners) at the end of the turn that drops something;
it lives in the agent's state beside the history, so it is checkpointed, survives
failovers, and rolls back with a failed turn.
"""

from __future__ import annotations

from mobkit.runtime.agents.llm.history import Message

INSTRUCTION = (
    "Summarise the conversation below for your own later reference, in at most 200 "
    "words. Keep facts, names, numbers, decisions and open questions; drop pleasantries."
)


def transcript(previous: str | None, dropped: list[Message]) -> str:
    """The text the model summarises: the summary so far, then the dropped messages."""
    lines = [f"Summary so far: {previous}"] if previous else []
    for message in dropped:
        role = message.get("role", "?")
        if message.get("content"):
            lines.append(f"{role}: {message['content']}")
        for call in message.get("tool_calls") or ():
            function = call.get("function", {})
            lines.append(f"{role} called {function.get('name')}({function.get('arguments')})")
    return "\n".join(lines)


def request(previous: str | None, dropped: list[Message]) -> list[Message]:
    return [
        {"role": "system", "content": INSTRUCTION},
        {"role": "user", "content": transcript(previous, dropped)},
    ]


def as_system(summary: str) -> str:
    return "Summary of the earlier conversation (older messages were dropped):\n" + summary
