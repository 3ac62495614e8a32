"""``echo``: replies with what it was sent."""

from __future__ import annotations

from mobkit.runtime.sdk import Agent, TurnContext


class EchoAgent(Agent):
    kind = "echo"

    async def on_turn(self, ctx: TurnContext, message: str) -> str:
        return message
