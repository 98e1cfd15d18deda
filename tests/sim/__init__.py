"""Deterministic simulation and history-checking helpers for the coterie test suite."""
