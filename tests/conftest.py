"""Shared pytest configuration: fixture plugins used across the suite."""

pytest_plugins = ["mobkit.testing.etcd_fixtures"]
