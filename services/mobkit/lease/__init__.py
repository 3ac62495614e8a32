"""Lease provider (CONTRACT-02): who may act on an identity now, with fencing tokens.

``domain`` (the port), ``memory`` and ``etcd_backend`` (implementations),
``servicer`` and ``service`` (gRPC server side), ``client`` (gRPC client adapter).
"""
