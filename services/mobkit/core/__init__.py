"""Domain types, identity rules and errors shared by every MobKit service (no gRPC here)."""
