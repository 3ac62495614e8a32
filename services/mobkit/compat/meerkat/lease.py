"""``LeaseProviderAdapter``: Meerkat MobKit's ``LeaseProviderProtocol`` over MobKit's
LeaseService (etcd-fenced leases; a new holder's fencing token is always larger).

``renew_leases`` is atomic from the caller's view, as the protocol demands:

* the whole batch is checked here (identities, duplicates, tokens) before any call;
* it is ONE ``RenewLeases`` call. On etcd a renewal reads the keys and keeps the
  instance's etcd lease alive; it never creates, moves or deletes a lease key. So a
  call that fails (or is cancelled) at any point leaves every grant as it was: same
  holder, same token (at most its expiry was pushed back, which cannot cost the
  caller a lease);
* the answer is checked (one result per grant, in order, tokens kept) and converted
  in full before anything is returned: the caller gets every result or an exception.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

import grpc
from meerkat_mobkit import identity_first_providers as sdk

from mobkit.compat.meerkat import convert
from mobkit.compat.meerkat.errors import UnexpectedAnswer, reasons_in_messages
from mobkit.core.identity import parse_identities
from mobkit.core.types import LeaseAcquireResult, LeaseRenewResult, Renewed
from mobkit.lease.client import GrpcLeaseProvider
from mobkit.lease.domain import check_grants, check_runtime_instance, check_ttl

DEFAULT_TTL = timedelta(seconds=10)
"""Same as the lease service's default (``--lease-ttl``)."""


class LeaseProviderAdapter:
    """Leases from a MobKit LeaseService; ``ttl`` is the lifetime of every new grant
    (the SDK's ``acquire_leases`` carries none)."""

    def __init__(self, client: GrpcLeaseProvider, *, ttl: timedelta = DEFAULT_TTL) -> None:
        self._client = client
        self._ttl = check_ttl(ttl)

    @classmethod
    def from_channel(
        cls, channel: grpc.aio.Channel, *, ttl: timedelta = DEFAULT_TTL, timeout: float = 30.0
    ) -> LeaseProviderAdapter:
        return cls(GrpcLeaseProvider(channel, timeout=timeout), ttl=ttl)

    async def acquire_leases(
        self, identities: list[str], runtime_instance: str
    ) -> dict[str, sdk.LeaseAcquireResult]:
        with reasons_in_messages():
            ids = parse_identities(identities)
            check_runtime_instance(runtime_instance)
            results = await self._client.acquire_leases(ids, runtime_instance, self._ttl)
            _check_order(ids, results)
            return {
                identity: convert.acquire_result_to_sdk(result)
                for identity, result in zip(ids, results, strict=True)
            }

    async def renew_leases(self, grants: list[sdk.LeaseGrant]) -> dict[str, sdk.LeaseRenewResult]:
        with reasons_in_messages():
            ours = check_grants([convert.grant_from_sdk(g) for g in grants])
            results = await self._client.renew_leases(ours)
            _check_order([g.identity for g in ours], results)
            for grant, result in zip(ours, results, strict=True):
                if (
                    isinstance(result, Renewed)
                    and result.grant.fencing_token != grant.fencing_token
                ):
                    raise UnexpectedAnswer(
                        f"renewing {grant.identity!r} changed its token "
                        f"{grant.fencing_token} to {result.grant.fencing_token}"
                    )
            return {
                grant.identity: convert.renew_result_to_sdk(result)
                for grant, result in zip(ours, results, strict=True)
            }

    async def release_leases(self, grants: list[sdk.LeaseGrant]) -> None:
        """Stale or unknown grants are a no-op."""
        with reasons_in_messages():
            ours = check_grants([convert.grant_from_sdk(g) for g in grants])
            await self._client.release_leases(ours)


def _check_order(
    identities: Sequence[str], results: Sequence[LeaseAcquireResult | LeaseRenewResult]
) -> None:
    answered = [convert.result_identity(r) for r in results]
    if answered != list(identities):
        raise UnexpectedAnswer(f"asked for {identities}, answered for {answered}")


if TYPE_CHECKING:

    def _conforms(adapter: LeaseProviderAdapter) -> sdk.LeaseProviderProtocol:
        return adapter
