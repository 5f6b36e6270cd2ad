"""Backends run task batches; each is one registry entry behind the `Backend` interface."""

from taureau.analytics.backends.base import BACKENDS, Backend, BackendSink, create_backend

__all__ = ["BACKENDS", "Backend", "BackendSink", "create_backend"]
