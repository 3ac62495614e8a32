"""The event log ``mobkit serve orchestrator`` composes.

Not a gRPC service: the orchestrator serves ``ListEvents`` and ``WatchEvents`` from
this log, so its composition builds it here beside the providers it builds.
"""

from __future__ import annotations

from mobkit.events.etcd_backend import EtcdEventLog
from mobkit.server.config import Settings
from mobkit.server.resources import Resources

MOB_ID = "mobkit"


async def build(settings: Settings, resources: Resources) -> EtcdEventLog:
    """The log in the suite's etcd; this replica's instance id names its batch keys."""
    return EtcdEventLog(
        await resources.etcd(),
        settings.etcd_prefix,
        mob_id=MOB_ID,
        instance=settings.instance_id(),
    )
