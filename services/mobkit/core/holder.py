"""The lease holder string ``<instance>~<incarnation>@<address>``, formatted and read
here only.

The address lets other replicas forward calls to the owner. The incarnation is new for
every process: a replica restarted under the same instance id must not be handed its
dead predecessor's grants (same fencing token), or a paused predecessor that wakes up
could write under the token the successor uses.

A holder is also any ``runtime_instance`` a LeaseService client chose, so reading one
never fails: a part the string lacks is absent, not an error.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Holder:
    """One lease holder, as stored in its lease key and its replica registration."""

    text: str

    @classmethod
    def fresh(cls, instance: str, address: str) -> Holder:
        """A new incarnation of ``instance`` reachable at ``address``."""
        return cls(f"{instance}~{secrets.token_hex(4)}@{address}")

    def __str__(self) -> str:
        return self.text

    @property
    def address(self) -> str | None:
        """``inst~inc@127.0.0.1:7700`` -> ``127.0.0.1:7700`` (after the last ``@``:
        an instance id may itself contain one)."""
        _, sep, address = self.text.rpartition("@")
        return address if sep and address else None

    @property
    def replica(self) -> str:
        """``inst~inc``: this process, whatever address it advertises (the name
        rendezvous hashing scores)."""
        return self.text.split("@", 1)[0]

    @property
    def instance(self) -> str:
        """``inst``: the configured instance id, the same across restarts."""
        return self.text.split("~")[0]
