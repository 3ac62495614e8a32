"""Pytest plugins and helpers for MobKit's tests."""
