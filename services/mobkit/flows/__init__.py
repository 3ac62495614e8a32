"""Flows: durable multi-agent runs of steps over roster identities (see docs/flows.md)."""
