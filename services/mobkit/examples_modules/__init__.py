"""Example MCP modules shipped with MobKit (run as ``python -m mobkit.examples_modules.<name>``)."""
