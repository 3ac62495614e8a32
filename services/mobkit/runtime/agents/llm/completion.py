"""One streamed Chat Completions request through the official ``openai`` SDK.

The SDK does the timeouts and the retries: each request may take ``timeout`` seconds
(between streamed chunks too), and one answered 429 or 5xx, or not at all, is tried
again up to ``max_retries`` times with its backoff (0.5 s doubling to 8 s, or the
server's ``Retry-After``). What is left after them becomes a MobKit error, so the
turn fails and is rolled back: ``MODEL_UNAVAILABLE`` (try again later) or
``MODEL_FAILED`` (the endpoint refused the request: a key, a model, a parameter).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mobkit.core.types import TokenUsage
from mobkit.runtime.agents.llm.settings import LlmSettings
from mobkit.runtime.agents.llm.tools import ToolCall
from mobkit.runtime.domain import ModelFailed, ModelUnavailable

if TYPE_CHECKING:
    import openai

DeltaSink = Callable[[str], Awaitable[None]]


@dataclass
class Completion:
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: TokenUsage = field(default_factory=TokenUsage)


_ClientKey = tuple[str | None, str, float, int]
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_ClientKey, openai.AsyncOpenAI]]
_clients = weakref.WeakKeyDictionary()


def client_for(settings: LlmSettings) -> openai.AsyncOpenAI:
    """One client (one connection pool) per endpoint, key and retry policy, in each
    event loop (a pool's connections belong to the loop that opened them)."""
    import openai  # here, not at import: the SDK takes a second to import, which every
    # CLI call and every process that never runs an llm agent would pay

    key = (settings.endpoint, settings.api_key, settings.timeout, settings.max_retries)
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(key)
    if client is None:
        client = clients[key] = openai.AsyncOpenAI(
            api_key=settings.api_key,
            base_url=settings.endpoint,
            timeout=settings.timeout,
            max_retries=settings.max_retries,
        )
    return client


async def complete(
    settings: LlmSettings,
    model: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    *,
    answer_only: bool,
    on_delta: DeltaSink,
) -> Completion:
    """The model's reply to ``messages``, its text passed to ``on_delta`` as it arrives.
    ``answer_only`` still shows the tools (the history names them) but forbids calls."""
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    options: dict[str, Any] = {}
    if tools:
        options["tools"] = tools
        options["tool_choice"] = "none" if answer_only else "auto"
    if settings.temperature is not None:
        options["temperature"] = settings.temperature
    if settings.max_tokens is not None:
        options["max_tokens"] = settings.max_tokens
    body = {
        "model": model,
        "messages": messages,
        "stream": True,
        "stream_options": {"include_usage": True},
        **options,
    }
    try:
        # ``chat.completions.create`` would first copy every message through the SDK's
        # TypedDict transform, in Python: with a long history, most of a turn's CPU
        # (the event loop's, every identity's). Ours are plain JSON already, so the
        # body goes as it is; the SDK still makes the request, with its auth, retries,
        # timeouts and errors, and parses the stream.
        stream = await client_for(settings).post(
            "/chat/completions",
            body=body,
            cast_to=ChatCompletion,
            options={"security": {"bearer_auth": True}},
            stream=True,
            stream_cls=openai.AsyncStream[ChatCompletionChunk],
        )
        return await _collect(stream, on_delta)
    except openai.APIStatusError as exc:
        detail = f"HTTP {exc.status_code}: {_message(exc)}"
        if exc.status_code == 429 or exc.status_code >= 500:
            raise ModelUnavailable(
                model, f"{detail} (after {settings.max_retries} retries)"
            ) from None
        raise ModelFailed(model, detail) from None
    except openai.APITimeoutError:
        raise ModelUnavailable(
            model, f"no answer within {settings.timeout:g} s (after {settings.max_retries} retries)"
        ) from None
    except openai.APIConnectionError as exc:
        raise ModelUnavailable(model, f"cannot reach {settings.endpoint}: {exc}") from None
    except openai.APIError as exc:  # a stream that broke off, a body that is no completion
        raise ModelUnavailable(model, str(exc)) from None


async def _collect(stream: Any, on_delta: DeltaSink) -> Completion:
    out = Completion()
    calls: dict[int, dict[str, str]] = {}
    async for chunk in stream:
        if chunk.usage is not None:
            out.usage = TokenUsage(
                chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0
            )
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if delta.content:
            out.text += delta.content
            await on_delta(delta.content)
        for piece in delta.tool_calls or ():
            call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
            call["id"] = piece.id or call["id"]
            if piece.function is not None:
                call["name"] += piece.function.name or ""
                call["arguments"] += piece.function.arguments or ""
    out.tool_calls = [
        ToolCall(c["id"] or f"call_{i}", c["name"], c["arguments"])
        for i, c in sorted(calls.items())
    ]
    return out


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return exc.message
