"""The etcd key layout, owned here and nowhere else (docs/architecture.md, "etcd key
layout").

Every package that reads or writes MobKit's etcd keys asks a :class:`Keyspace` for
them instead of spelling the layout itself. The bytes are part of the stored format:
existing clusters keep working only while every key below stays exactly as it is.

The continuity store's keys are a logical layout of their own (``records/...``,
``snapshots/...``): the SQLite and memory engines address the same logical keys, and
the etcd engine puts them under :attr:`Keyspace.continuity`. That relative layout is
the ``*_key`` / ``*_prefix`` functions at the end of this module.
"""

from __future__ import annotations

import hashlib

# -- continuity's logical keys (relative to Keyspace.continuity on etcd) --------------

RECORDS = b"records/"
SNAPSHOTS = b"snapshots/"
SESSIONS = b"sessions/"
CHUNKS = b"chunks/"
RECEIPTS = b"receipts/"


def record_key(identity: str) -> bytes:
    return RECORDS + identity.encode()


def snapshot_prefix(identity: str) -> bytes:
    # Identities contain no '/', so this prefix selects exactly this identity's snapshots.
    return SNAPSHOTS + identity.encode() + b"/"


def snapshot_key(identity: str, session_id: str) -> bytes:
    return snapshot_prefix(identity) + session_id.encode()


def session_key(session_id: str) -> bytes:
    return SESSIONS + session_id.encode()


def chunk_prefix(identity: str) -> bytes:
    return CHUNKS + identity.encode() + b"/"


def session_chunk_prefix(identity: str, session_id: str) -> bytes:
    # Session ids may contain '/', so a fixed-length hash of the id keeps one session's
    # prefix from selecting another session's chunks.
    tag = hashlib.blake2b(session_id.encode(), digest_size=12).hexdigest()
    return chunk_prefix(identity) + tag.encode() + b"/"


def chunk_key(identity: str, session_id: str, chunk_name: str) -> bytes:
    return session_chunk_prefix(identity, session_id) + chunk_name.encode()


def receipt_prefix(identity: str) -> bytes:
    return RECEIPTS + identity.encode() + b"/"


def receipt_key(identity: str, idempotency_key: str) -> bytes:
    # Idempotency keys are client strings of any content: a digest bounds the etcd key.
    return receipt_prefix(identity) + hashlib.sha256(idempotency_key.encode()).hexdigest().encode()


# -- the whole etcd layout under one prefix ---------------------------------------------


class Keyspace:
    """Every MobKit etcd key under ``prefix`` (default ``/mobkit``; a trailing ``/``
    is ignored, so ``/mobkit/`` names the same keys)."""

    __slots__ = (
        "base",
        "compaction",
        "continuity",
        "events",
        "events_floor",
        "events_head",
        "events_trimmer",
        "intents",
        "lease_sessions",
        "leases",
        "replicas",
        "roster_document",
        "run_cancels",
        "run_requests",
        "runs",
        "runs_active",
        "tickets",
        "tickets_open",
    )

    def __init__(self, prefix: str = "/mobkit") -> None:
        base = prefix.rstrip("/")
        self.base = base
        self.leases = f"{base}/leases/".encode()
        """``<identity>`` -> holder, on the holder's etcd lease; the fencing token is the
        key's ``create_revision``."""
        self.lease_sessions = f"{base}/lease-sessions/".encode()
        """``<ttl>/<holder>`` -> the id of that instance's etcd lease."""
        self.continuity = f"{base}/continuity/".encode()
        """Namespace of the continuity store's logical keys (module functions above)."""
        self.replicas = f"{base}/replicas/".encode()
        """``<holder>`` -> empty, on the replica's registration lease."""
        self.intents = f"{base}/intents/".encode()
        """``<identity>`` -> an operator's ``suspended`` / ``retired``."""
        self.events = f"{base}/events/".encode()
        """``<instance>/<time>-<seq>-<random>-<n>`` -> a batch of ``n`` events."""
        self.events_head = f"{base}/events-meta/head".encode()
        self.events_floor = f"{base}/events-meta/floor".encode()
        self.events_trimmer = f"{base}/events-meta/trimmer".encode()
        self.roster_document = f"{base}/roster/document".encode()
        self.compaction = f"{base}/compaction".encode()
        self.runs = f"{base}/runs/".encode()
        """``<run_id>`` -> a flow run's record, written under the run's lease
        (``run_lease_identity``); a finished run's is on a retention lease."""
        self.runs_active = f"{base}/runs-active/".encode()
        """``<run_id>`` -> empty while the run is unfinished: what replicas claim."""
        self.run_requests = f"{base}/run-requests/".encode()
        """``<sha256(request_id)>`` -> the run id StartRun created for that request."""
        self.run_cancels = f"{base}/run-cancels/".encode()
        """``<run_id>`` -> empty once CancelRun asked; the owner cancels the run."""
        self.tickets = f"{base}/tickets/".encode()
        """``<turn_id>`` -> a turn ticket (SubmitTurn), written under its identity's lease
        token, on a retention lease; its receipt (continuity) is its completion."""
        self.tickets_open = f"{base}/tickets-open/".encode()
        """``<identity>/<turn_id>`` -> empty: a ticket its identity's next owner looks at
        (deleted once the ticket is known finished)."""

    def __repr__(self) -> str:
        return f"Keyspace({self.base or '/'!r})"

    # -- leases --------------------------------------------------------------------

    def lease(self, identity: str) -> bytes:
        return self.leases + identity.encode()

    def is_lease(self, key: bytes) -> bool:
        return key.startswith(self.leases)

    def lease_identity(self, key: bytes) -> str:
        """The identity a lease key names (``key`` must be one)."""
        return key[len(self.leases) :].decode(errors="replace")

    def lease_session(self, ttl_s: int, holder: str) -> bytes:
        return self.lease_sessions + f"{ttl_s}/{holder}".encode()

    def is_lease_session(self, key: bytes) -> bool:
        return key.startswith(self.lease_sessions)

    # -- continuity ----------------------------------------------------------------

    def continuity_key(self, logical: bytes) -> bytes:
        """The etcd key of one of continuity's logical keys."""
        return self.continuity + logical

    def record(self, identity: str) -> bytes:
        return self.continuity + record_key(identity)

    def snapshot(self, identity: str, session_id: str) -> bytes:
        return self.continuity + snapshot_key(identity, session_id)

    def chunk(self, identity: str, session_id: str, chunk_name: str) -> bytes:
        return self.continuity + chunk_key(identity, session_id, chunk_name)

    def receipt(self, identity: str, idempotency_key: str) -> bytes:
        return self.continuity + receipt_key(identity, idempotency_key)

    def session(self, session_id: str) -> bytes:
        return self.continuity + session_key(session_id)

    # -- orchestrator --------------------------------------------------------------

    def replica(self, holder: str) -> bytes:
        return self.replicas + holder.encode()

    def intent(self, identity: str) -> bytes:
        return self.intents + identity.encode()

    def event_batch(self, instance: str, unique: str) -> bytes:
        return self.events + f"{instance}/{unique}".encode()

    # -- flows ---------------------------------------------------------------------

    def run(self, run_id: str) -> bytes:
        return self.runs + run_id.encode()

    def run_active(self, run_id: str) -> bytes:
        return self.runs_active + run_id.encode()

    def run_request(self, request_id: str) -> bytes:
        # Request ids are client strings of any content: a digest bounds the etcd key.
        return self.run_requests + hashlib.sha256(request_id.encode()).hexdigest().encode()

    def run_cancel(self, run_id: str) -> bytes:
        return self.run_cancels + run_id.encode()

    # -- turn tickets --------------------------------------------------------------

    def ticket(self, turn_id: str) -> bytes:
        return self.tickets + turn_id.encode()

    def tickets_open_of(self, identity: str) -> bytes:
        # Identities contain no '/': this prefix selects exactly this identity's tickets.
        return self.tickets_open + identity.encode() + b"/"

    def ticket_open(self, identity: str, turn_id: str) -> bytes:
        return self.tickets_open_of(identity) + turn_id.encode()


def run_lease_identity(run_id: str) -> str:
    """The lease-provider identity of a run: its owner holds this lease, and its record
    is written only while the writer's token is this lease's."""
    return f"flow-run:{run_id}"
