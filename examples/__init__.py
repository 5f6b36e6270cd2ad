"""Runnable examples (each file is a script)."""
