"""Segment job tests."""
