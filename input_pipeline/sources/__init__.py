"""Readers, one per raw file layout; each only turns rows into ``schema.Interactions``."""
