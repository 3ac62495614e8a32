"""``AgentCustomizerAdapter``: Meerkat MobKit's ``AgentCustomizerProtocol`` over an
AgentCustomizerService (MobKit's ``[customizer]`` rules, or any implementation).

The SDK passes a draft and expects it changed in place; the service returns the
changed draft, whose fields are written back. What the service cannot carry stays
as it was on the SDK's draft: ``provider_params`` and in-process tool handlers. A
tool the service adds is a declaration only: the gateway calls it back through
``callback/call_tool``, which needs a handler registered in this process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from meerkat_mobkit import identity_first_models as sdk_models

from mobkit.compat.meerkat import convert
from mobkit.compat.meerkat.errors import reasons_in_messages
from mobkit.customizer.client import GrpcAgentCustomizer


class AgentCustomizerAdapter:
    """Build-time customization from a MobKit AgentCustomizerService."""

    def __init__(self, client: GrpcAgentCustomizer) -> None:
        self._client = client

    @classmethod
    def from_channel(
        cls, channel: grpc.aio.Channel, *, timeout: float = 30.0
    ) -> AgentCustomizerAdapter:
        return cls(GrpcAgentCustomizer(channel, timeout=timeout))

    async def customize_build(
        self,
        context: sdk_models.AgentBuildContext,
        spec: sdk_models.DurableAgentSpec,
        draft: sdk_models.AgentBuildDraft,
    ) -> None:
        """Raises ``CustomizerFailed`` (``customizer_failed: ...``) when a rule refuses the
        build; the draft is then left as it was."""
        with reasons_in_messages():
            customized = await self._client.customize_build(
                convert.build_context_from_sdk(context),
                convert.spec_from_sdk(spec),
                convert.draft_from_sdk(draft),
            )
            convert.apply_draft(draft, customized)

    async def after_create(self, identity: str, session_id: str, context: Any) -> None:
        with reasons_in_messages():
            await self._client.after_create(
                identity, session_id, convert.session_context_to_json(context)
            )


if TYPE_CHECKING:
    from meerkat_mobkit import identity_first_providers as sdk

    def _conforms(adapter: AgentCustomizerAdapter) -> sdk.AgentCustomizerProtocol:
        return adapter
