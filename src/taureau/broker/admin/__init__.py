"""Admin REST API (Pulsar's /admin/v2 paths) and Prometheus metrics on the web port."""

from taureau.broker.admin.app import build_admin_app

__all__ = ["build_admin_app"]
