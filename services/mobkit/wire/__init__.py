"""Proto <-> domain conversion, one module per proto package (``mobkit.wire.lease`` ...).

Servicers and gRPC client adapters use these; domain code never sees a proto.
"""
