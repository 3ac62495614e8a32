"""Structural event log: a durable, totally ordered log of what happened to the mob.

``domain`` (the port :class:`~mobkit.events.domain.EventLog`, its types and the cursor
and window rules), ``memory`` and ``etcd_backend`` (implementations), ``keys`` (the
etcd key layout), ``retention`` (the trim loop) and ``service`` (the log
``mobkit serve orchestrator`` composes). It has no gRPC service of its own: the
orchestrator serves ``ListEvents`` and ``WatchEvents`` from it.
"""
