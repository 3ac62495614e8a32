"""An OpenAI-compatible Chat Completions server on loopback, for tests of the ``llm`` kind.

It serves ``POST /v1/chat/completions`` (plain JSON, or SSE chunks when the request
streams) from a script of replies, and records every request body so a test can
assert what the model was sent and how often it was called:

    with FakeOpenAI() as model:
        model.script(Fail(429), Say("hello"))
        ...  # point the agent at model.base_url
        assert len(model.requests) == 2

Each scripted reply answers ``times`` requests, then the next one takes over; with
the script empty, ``default`` answers (by default :func:`heard`, which names the
last user message and how many the request carried, so a reply shows the history
the model was given). It runs uvicorn in its own thread and event loop: a test
that blocks its own loop does not stall the model.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mobkit.server.http_listener import http_listener


@dataclass
class Say:
    """A text reply, streamed in ``chunks`` pieces when the request streams."""

    text: str
    chunks: int = 3
    prompt_tokens: int = 10
    completion_tokens: int = 5
    times: int = 1


@dataclass
class CallTools:
    """A reply asking for tool calls: ``(function name, arguments)`` pairs."""

    calls: list[tuple[str, dict[str, Any]]]
    prompt_tokens: int = 10
    completion_tokens: int = 5
    times: int = 1


@dataclass
class Fail:
    """An HTTP error (429, 500, ...) with an OpenAI-style error body; retry-after is
    1 ms so the SDK's retries do not slow the test."""

    status: int
    times: int = 1


@dataclass
class Slow:
    """Waits ``seconds`` (or until the server stops), then answers ``then``."""

    seconds: float
    then: Say = field(default_factory=lambda: Say("late"))
    times: int = 1


Reply = Say | CallTools | Fail | Slow
Responder = Callable[[dict[str, Any]], Reply]


def heard(body: dict[str, Any]) -> Reply:
    """The default reply: ``heard N: TEXT``, N the user messages the request carried."""
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    last = users[-1]["content"] if users else ""
    return Say(f"heard {len(users)}: {last}")


class FakeOpenAI:
    def __init__(self, default: Responder = heard) -> None:
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str] = []
        """Each request's ``Authorization`` header ("" when it had none)."""
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._socket = http_listener("127.0.0.1", 0)
        self.port: int = self._socket.getsockname()[1]
        app = Starlette(routes=[Route("/v1/chat/completions", self._complete, methods=["POST"])])
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self._script.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted answers not given yet."""
        with self._lock:
            return sum(r.times for r in self._script)

    def start(self, timeout: float = 10.0) -> FakeOpenAI:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake model server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next(self, body: dict[str, Any], authorization: str) -> Reply:
        with self._lock:
            self.requests.append(body)
            self.authorizations.append(authorization)
            if self._script:
                reply = self._script[0]
                reply.times -= 1
                if reply.times <= 0:
                    self._script.popleft()
                return reply
        return self.default(body)

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        reply = self._next(body, request.headers.get("authorization", ""))
        if isinstance(reply, Slow):
            waited = 0.0
            while waited < reply.seconds and not self._stopping.is_set():
                await asyncio.sleep(0.05)
                waited += 0.05
            reply = reply.then
        if isinstance(reply, Fail):
            return JSONResponse(
                {"error": {"message": f"scripted {reply.status}", "type": "server_error"}},
                status_code=reply.status,
                headers={"retry-after-ms": "1"},
            )
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                _sse(_chunks(reply, body.get("model", ""), usage)),
                media_type="text/event-stream",
            )
        return JSONResponse(_completion(reply, body.get("model", "")))


def _usage(reply: Say | CallTools) -> dict[str, int]:
    return {
        "prompt_tokens": reply.prompt_tokens,
        "completion_tokens": reply.completion_tokens,
        "total_tokens": reply.prompt_tokens + reply.completion_tokens,
    }


def _tool_calls(reply: CallTools) -> list[dict[str, Any]]:
    return [
        {
            "id": f"call_{uuid.uuid4().hex[:12]}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }
        for name, args in reply.calls
    ]


def _completion(reply: Say | CallTools, model: str) -> dict[str, Any]:
    if isinstance(reply, Say):
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        finish = "stop"
    else:
        message = {"role": "assistant", "content": None, "tool_calls": _tool_calls(reply)}
        finish = "tool_calls"
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _usage(reply),
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stream",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _chunks(reply: Say | CallTools, model: str, usage: bool) -> Iterator[dict[str, Any]]:
    yield _chunk(model, {"role": "assistant", "content": ""})
    if isinstance(reply, Say):
        size = max(1, -(-len(reply.text) // max(1, reply.chunks)))
        for start in range(0, len(reply.text), size):
            yield _chunk(model, {"content": reply.text[start : start + size]})
        finish = "stop"
    else:
        # Each call's arguments arrive in two pieces, as real servers split them.
        for index, call in enumerate(_tool_calls(reply)):
            arguments = call["function"]["arguments"]
            half = len(arguments) // 2
            head = {"index": index, "id": call["id"], "type": "function"}
            function = {"name": call["function"]["name"], "arguments": arguments[:half]}
            yield _chunk(model, {"tool_calls": [{**head, "function": function}]})
            rest = {"index": index, "function": {"arguments": arguments[half:]}}
            yield _chunk(model, {"tool_calls": [rest]})
        finish = "tool_calls"
    yield _chunk(model, {}, finish)
    if usage:
        yield {**_chunk(model, {}), "choices": [], "usage": _usage(reply)}


async def _sse(chunks: Iterator[dict[str, Any]]) -> Any:
    for chunk in chunks:
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"
