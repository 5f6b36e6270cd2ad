"""The web dashboard: a page at `/` of the admin web port, fed by the admin REST API and one
server-sent-events stream of live rates (`GET /admin/taureau/live`)."""

from taureau.dashboard.install import install_dashboard

__all__ = ["install_dashboard"]
