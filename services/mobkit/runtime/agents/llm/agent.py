"""``llm``: an agent whose turns are answered by a Chat Completions model.

A turn sends the model the draft's system prompt and instructions, the kept history
and the new message, with the granted tools and managed peers as function tools
(:mod:`.tools`). While the model asks for tool calls, they run and their results go
back to it, for at most ``max_tool_rounds`` rounds; the request after the last round
forbids calls (``tool_choice: "none"``), so the turn ends with an answer, and a model
that calls tools all the same fails the turn with ``MODEL_FAILED``. The reply is
streamed: each piece goes to ``ctx.emit_delta`` as it arrives.

The history is the agent's state (``state["messages"]``), so it is checkpointed
with every turn and survives restarts and failovers; a failed turn leaves it as it
was. :mod:`.history` keeps it within its bound, and with ``history_strategy =
"summarize"`` :mod:`.summary` folds what the bound drops into a running summary.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mobkit.core.errors import InvalidArgument
from mobkit.core.types import AgentBuildDraft, TokenUsage
from mobkit.observability import metrics
from mobkit.runtime.agents.llm import summary
from mobkit.runtime.agents.llm.completion import Completion, complete
from mobkit.runtime.agents.llm.history import Message, trim
from mobkit.runtime.agents.llm.settings import LlmSettings
from mobkit.runtime.agents.llm.tools import Toolbox
from mobkit.runtime.domain import ModelFailed, ModelUnavailable
from mobkit.runtime.sdk import Agent, TurnContext


class LlmAgent(Agent):
    kind = "llm"
    settings: ClassVar[LlmSettings] = LlmSettings()
    """The runtime's settings; :func:`llm_kind` makes a kind with others."""

    def __init__(
        self, identity: str, draft: AgentBuildDraft, state: dict[str, Any] | None = None
    ) -> None:
        super().__init__(identity, draft, state)
        # A draft whose llm.* labels are wrong fails its session's creation, naming them.
        self.config = self.settings.for_draft(draft.labels)

    @property
    def model(self) -> str:
        model = self.draft.model or self.config.model
        if not model:
            raise InvalidArgument(
                "model", "an llm agent needs a model: in its draft, or [llm] model"
            )
        return model

    def _system(self) -> list[Message]:
        parts = [self.draft.system_prompt or "", *self.draft.additional_instructions]
        if self.state.get("summary"):
            parts.append(summary.as_system(str(self.state["summary"])))
        text = "\n\n".join(p for p in parts if p)
        return [{"role": "system", "content": text}] if text else []

    def _trim(self, messages: list[Message]) -> list[Message]:
        return trim(messages, self.config.history_max_messages, self.config.history_max_chars)

    async def on_turn(self, ctx: TurnContext, message: str) -> str:
        model, config = self.model, self.config
        history: list[Message] = list(self.state.get("messages", []))
        turn: list[Message] = [{"role": "user", "content": message}]
        toolbox = Toolbox(ctx)
        usage = TokenUsage()
        rounds = 0
        while True:
            answer_only = rounds >= config.max_tool_rounds
            reply = await self._ask(
                ctx, model, self._system() + self._trim(history + turn), toolbox, answer_only
            )
            usage += reply.usage
            if not reply.tool_calls:
                break
            if answer_only:
                raise ModelFailed(
                    model, f"asked for tool calls after {rounds} rounds (max_tool_rounds)"
                )
            rounds += 1
            turn.append(
                {
                    "role": "assistant",
                    "content": reply.text or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments},
                        }
                        for c in reply.tool_calls
                    ],
                }
            )
            for call in reply.tool_calls:
                result = await toolbox.run(call)
                turn.append({"role": "tool", "tool_call_id": call.id, "content": result})
        turn.append({"role": "assistant", "content": reply.text})
        every = history + turn
        kept = self._trim(every)
        if config.history_strategy == "summarize" and len(kept) < len(every):
            usage += await self._summarise(model, every[: len(every) - len(kept)])
        self.state["messages"] = kept
        total = self.state.get("usage") or [0, 0]
        self.state["usage"] = [total[0] + usage.prompt_tokens, total[1] + usage.completion_tokens]
        ctx.usage = usage
        return reply.text

    async def _summarise(self, model: str, dropped: list[Message]) -> TokenUsage:
        """Fold ``dropped`` into ``state["summary"]``; the tokens that took."""
        previous = self.state.get("summary")
        reply = await self._ask(None, model, summary.request(previous, dropped), None, True)
        self.state["summary"] = reply.text.strip() or previous
        return reply.usage

    async def _ask(
        self,
        ctx: TurnContext | None,
        model: str,
        messages: list[Message],
        toolbox: Toolbox | None,
        answer_only: bool,
    ) -> Completion:
        """One request; its text streams to ``ctx``'s listeners (none: a summary)."""
        try:
            reply = await complete(
                self.config,
                model,
                messages,
                toolbox.specs if toolbox else [],
                answer_only=answer_only,
                on_delta=ctx.emit_delta if ctx else _ignore,
            )
        except ModelUnavailable:
            metrics.LLM_REQUESTS.labels(model, "unavailable").inc()
            raise
        except ModelFailed:
            metrics.LLM_REQUESTS.labels(model, "failed").inc()
            raise
        metrics.LLM_REQUESTS.labels(model, "ok").inc()
        metrics.LLM_TOKENS.labels(model, "prompt").inc(reply.usage.prompt_tokens)
        metrics.LLM_TOKENS.labels(model, "completion").inc(reply.usage.completion_tokens)
        return reply


async def _ignore(text: str) -> None:
    pass


def llm_kind(settings: LlmSettings) -> type[LlmAgent]:
    """The ``llm`` kind under ``settings`` (the runtime's ``[llm]`` table)."""
    return type("LlmAgent", (LlmAgent,), {"settings": settings})
