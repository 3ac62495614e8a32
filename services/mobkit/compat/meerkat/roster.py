"""``RosterProviderAdapter``: Meerkat MobKit's ``RosterProviderProtocol`` over MobKit's
RosterService (a roster file or etcd document, validated, watched for edits).

The service serves the last valid roster: when the source's latest version is
rejected, the previous one stays in force and the problem is logged here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import grpc
from meerkat_mobkit import identity_first_models as sdk_models

from mobkit.compat.meerkat import convert
from mobkit.compat.meerkat.errors import reasons_in_messages
from mobkit.roster.client import GrpcRosterProvider

log = logging.getLogger("mobkit.compat.meerkat")


class RosterProviderAdapter:
    """The desired identities from a MobKit RosterService."""

    def __init__(self, client: GrpcRosterProvider) -> None:
        self._client = client

    @classmethod
    def from_channel(
        cls, channel: grpc.aio.Channel, *, timeout: float = 30.0
    ) -> RosterProviderAdapter:
        return cls(GrpcRosterProvider(channel, timeout=timeout))

    async def roster(self, context: sdk_models.RosterContext) -> list[sdk_models.DurableAgentSpec]:
        with reasons_in_messages():
            snapshot = await self._client.get_roster(convert.roster_context_from_sdk(context))
            if snapshot.problem is not None:
                log.warning(
                    "roster source rejected, serving revision %d: %s",
                    snapshot.revision,
                    snapshot.problem.message,
                )
            return [convert.spec_to_sdk(spec) for spec in snapshot.specs]


if TYPE_CHECKING:
    from meerkat_mobkit import identity_first_providers as sdk

    def _conforms(adapter: RosterProviderAdapter) -> sdk.RosterProviderProtocol:
        return adapter
