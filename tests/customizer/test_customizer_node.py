"""The Node.js customizer (clients/customizer-node), called through the Python adapter.

It shows that a customizer can be written in any language: it loads MobKit's
.proto files at run time and reports refusals the way MobKit does (one
ErrorInfo in grpc-status-details-bin), so the adapter raises CustomizerFailed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from json_support import same

from mobkit.core.errors import CustomizerFailed
from mobkit.core.types import AgentBuildContext, AgentBuildDraft, DurableAgentSpec, ExternalToolDef
from mobkit.customizer.client import GrpcAgentCustomizer
from mobkit.customizer.domain import after_create_best_effort
from mobkit.testing.node import node_server

NODE_DIR = Path(__file__).resolve().parents[2] / "clients" / "customizer-node"
INSTRUCTION = "Keep answers short: a Node.js customizer asked for it."


@pytest.fixture
async def node_customizer() -> AsyncIterator[str]:
    async with node_server(NODE_DIR) as address:
        yield address


@pytest.mark.timeout(300)  # a first run installs the npm packages
async def test_node_customizer_changes_the_draft(node_customizer: str) -> None:
    async with grpc.aio.insecure_channel(node_customizer) as channel:
        client = GrpcAgentCustomizer(channel, timeout=10)
        draft = AgentBuildDraft(
            model="m",
            additional_instructions=["first"],
            labels={"team": "alpha"},
            # A customizer in another language hands the JSON text back untouched.
            app_context=["v", 2**64 + 1, {"whole": 3.0, "n": 3}],
            external_tools=[ExternalToolDef("t", "d", {"type": "object", "maxItems": 2**53 + 1})],
        )
        spec = DurableAgentSpec(identity="worker-1", profile="worker")  # type: ignore[arg-type]
        out = await client.customize_build(AgentBuildContext(identity="worker-1"), spec, draft)  # type: ignore[arg-type]
        assert out.additional_instructions == ["first", INSTRUCTION]
        assert out.labels == {"team": "alpha", "customized-by": "node"}
        assert (out.model, out.app_context, out.external_tools) == (
            draft.model,
            draft.app_context,
            draft.external_tools,
        )
        assert same(out.app_context, draft.app_context)
        assert same(out.external_tools[0].input_schema, draft.external_tools[0].input_schema)
        assert out.system_prompt is None  # presence survives the other language
        assert await after_create_best_effort(client, "worker-1", "session-1", {"a": 1})


@pytest.mark.timeout(300)
async def test_node_customizer_refusal_is_customizer_failed(node_customizer: str) -> None:
    async with grpc.aio.insecure_channel(node_customizer) as channel:
        client = GrpcAgentCustomizer(channel, timeout=10)
        spec = DurableAgentSpec(identity="forbidden-1", profile="worker")  # type: ignore[arg-type]
        with pytest.raises(CustomizerFailed) as info:
            await client.customize_build(
                AgentBuildContext(identity="forbidden-1"),
                spec,
                AgentBuildDraft(),  # type: ignore[arg-type]
            )
        err = info.value
        assert err.reason == "CUSTOMIZER_FAILED"
        assert err.identity == "forbidden-1" and "forbidden-" in err.detail
