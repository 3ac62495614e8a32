"""The roster provider (CONTRACT-03): the desired set of durable identities.

``domain`` holds the port and snapshot types; ``document`` parses and validates
roster documents; ``file_source`` (a watched TOML file), ``etcd_source`` (one
etcd key) and ``memory`` feed ``state``, which serves snapshots and watches.
"""
