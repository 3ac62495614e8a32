"""The server scaffold every MobKit service shares."""
