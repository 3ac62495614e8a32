"""The orchestrator: composes the providers and hosts durable identities."""
