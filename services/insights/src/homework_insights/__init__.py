"""The homework insights service."""
