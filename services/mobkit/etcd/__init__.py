"""etcd access for MobKit: an asyncio client, request builders and local etcd processes."""

from mobkit.etcd.channel import EtcdTLS
from mobkit.etcd.client import EtcdClient
from mobkit.etcd.errors import (
    EtcdAuthError,
    EtcdCompacted,
    EtcdError,
    EtcdLeaseNotFound,
    EtcdNoSpace,
    EtcdUnavailable,
)
from mobkit.etcd.ops import prefix_end

__all__ = [
    "EtcdAuthError",
    "EtcdClient",
    "EtcdCompacted",
    "EtcdError",
    "EtcdLeaseNotFound",
    "EtcdNoSpace",
    "EtcdTLS",
    "EtcdUnavailable",
    "prefix_end",
]
