"""Fixture module (placeholder until the engine lands)."""
