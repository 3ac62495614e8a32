"""The reference agent runtime: hosts sessions and runs their turns."""
