"""Taureau: a serverless platform for real-time data."""

__version__ = "0.1.0"
