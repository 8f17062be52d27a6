"""The homework assignment service."""
