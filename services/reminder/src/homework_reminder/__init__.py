"""The homework reminder service."""
