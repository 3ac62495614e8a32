"""Prometheus metrics (RPCs, leases, identities, checkpoints, etcd round trips)."""
