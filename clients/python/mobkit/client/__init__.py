"""Python client library for MobKit."""
