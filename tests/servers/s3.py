"""Fixture module (placeholder)."""
