"""Client-side group commit: saves made at the same moment share one call.

Concurrent callers of ``GrpcContinuityStore.save_session_snapshot`` (turns of many
identities finishing together) would each cost the service a gRPC call, and a call costs
more CPU than the save itself. The first save of an event-loop turn yields once, so the
callers resumed in the same turn queue behind it; whatever queued goes as one
``SaveSessionSnapshots`` call (the service runs the saves concurrently; on etcd they
commit in one txn, each under its own compares), and a lone save as the usual
``SaveSessionSnapshot``. Nothing waits for company: callers resumed in the same turn
(by the reply of the previous batch) simply arrive together.

Every save keeps its own outcome: the service answers one per save, so a stale fencing
token fails that save only. A failure of the call as a whole (service unreachable after
retries) is what each save would have met on its own. A refusal of the whole request
(a service without the batch RPC, or one that rejects the request as malformed) sends
each save again on its own, so each gets its own answer; re-sending is safe, as a save
that committed succeeds unchanged.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable

from mobkit.core.errors import BackendUnavailable, MobKitError
from mobkit.core.identity import identity_problem
from mobkit.gen.continuity.v1 import continuity_service_pb2 as svc

Request = svc.SaveSessionSnapshotRequest
SaveOne = Callable[[Request], Awaitable[str]]
SaveMany = Callable[[list[Request]], Awaitable[list[str | MobKitError]]]

MAX_SAVES = 64
"""Saves per batch call."""
MAX_BYTES = 1024 * 1024
"""Snapshot and receipt bytes per batch call (well within gRPC's message limits)."""
SOLO_BYTES = 256 * 1024
"""A save carrying more than this goes alone."""


def _payload(request: Request) -> int:
    return len(request.snapshot.data) + len(request.receipt.data)


class SaveBatcher:
    def __init__(self, one: SaveOne, many: SaveMany) -> None:
        self._one = one
        self._many = many
        self._queued: list[tuple[Request, asyncio.Future[str]]] = []
        self._gathering = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batch_calls = True
        """False once the service answered that it has no batch call."""
        self.batches = 0
        """Batch calls sent (tests and benchmarks read it)."""

    async def save(self, request: Request) -> str:
        # A save the service would refuse as a malformed request goes alone, so the
        # refusal is its own (saves are range-checked before they get here).
        if (
            not self.batch_calls
            or _payload(request) > SOLO_BYTES
            or identity_problem(request.identity) is not None
        ):
            return await self._one(request)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if self._gathering:  # another save of this turn leads: join it
            self._queued.append((request, future))
            return await future
        # Lead: let the callers resumed in this turn of the loop queue behind us.
        self._gathering = True
        try:
            await asyncio.sleep(0)
        except BaseException:
            future.cancel()  # given up on: not sent; the others still go
            raise
        finally:
            self._gathering = False
            queued = [(r, f) for r, f in self._queued if not f.done()]  # not given up on
            self._queued = []
            if queued:
                self._flush([(request, future), *queued] if not future.done() else queued)
        if not queued:  # alone: the usual call, from the caller's own task
            return await self._one(request)
        return await future

    def _flush(self, queued: list[tuple[Request, asyncio.Future[str]]]) -> None:
        group: list[tuple[Request, asyncio.Future[str]]] = []
        size = 0
        for item in queued:
            if group and (len(group) >= MAX_SAVES or size + _payload(item[0]) > MAX_BYTES):
                self._start(group)
                group, size = [], 0
            group.append(item)
            size += _payload(item[0])
        if group:
            self._start(group)

    def _start(self, group: list[tuple[Request, asyncio.Future[str]]]) -> None:
        task = asyncio.get_running_loop().create_task(self._send(group), name="continuity-saves")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, group: list[tuple[Request, asyncio.Future[str]]]) -> None:
        try:
            if len(group) == 1:
                await self._alone(*group[0])
                return
            try:
                outcomes = await self._many([r for r, _ in group])
                self.batches += 1
            except BackendUnavailable as exc:
                for _, future in group:
                    _settle(future, copy.copy(exc))
                return
            except MobKitError as exc:
                if getattr(exc, "code", None) == "UNIMPLEMENTED":
                    self.batch_calls = False  # an older service: single saves from now on
                await asyncio.gather(*(self._alone(r, f) for r, f in group))
                return
            except Exception as exc:  # not an answer of the service's: each caller's
                for _, future in group:
                    _settle(future, exc)
                return
            for (_, future), outcome in zip(group, outcomes, strict=True):
                _settle(future, outcome)
        finally:
            for _, future in group:  # cancelled (loop closing): the outcome is unknown
                _settle(future, BackendUnavailable("remote service", "save cancelled"))

    async def _alone(self, request: Request, future: asyncio.Future[str]) -> None:
        try:
            outcome: str | Exception = await self._one(request)
        except Exception as exc:  # the caller's, whatever it is
            outcome = exc
        _settle(future, outcome)


def _settle(future: asyncio.Future[str], outcome: str | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, str):
        future.set_result(outcome)
    else:
        future.set_exception(outcome)
