"""The continuity store (CONTRACT-01): authoritative durable state of every identity.

``domain`` holds the port; ``rules`` and ``operations`` hold the one implementation of
every operation, which the memory, SQLite and etcd engines execute atomically.
"""
