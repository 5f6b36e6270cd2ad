"""Mount the dashboard on the admin app: the page at `/`, its files under `/dashboard/`, and
the live stream at `GET /admin/taureau/live`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.staticfiles import StaticFiles

from taureau.dashboard import assets
from taureau.dashboard.access import RoleView, whoami
from taureau.dashboard.hub import HubFullError, LiveHub
from taureau.dashboard.samples import FunctionRates, combined, state_sample
from taureau.dashboard.stream import EventStream

if TYPE_CHECKING:
    from taureau.broker.service import BrokerService
    from taureau.functions.worker import FunctionWorker

router = APIRouter(tags=["dashboard"])


@router.get("/", include_in_schema=False)
async def index(request: Request) -> Response:
    static: Path = request.app.state.dashboard_static
    absent = assets.missing(static)
    if absent:  # say how to build them, rather than serve a page that cannot work
        return HTMLResponse(assets.not_built_page(absent), status_code=503)
    return FileResponse(static / "index.html", headers={"Cache-Control": "no-cache"})


@router.get("/admin/taureau/live")
async def live(request: Request) -> Response:
    """Server-sent events: first `history` (the totals of the last 15 minutes), then a
    `sample` every second (per-topic and per-function rates, backlog, storage)."""
    hub: LiveHub = request.app.state.live_hub
    service: BrokerService | None = getattr(request.app.state, "service", None)
    view = None
    if service is not None and service.authorization.enabled:
        role = _role(request)
        if not service.authorization.is_superuser(role):
            view = RoleView(service.authorization, role)  # only what this role may read
    try:
        subscriber = hub.subscribe()
    except HubFullError as exc:
        return JSONResponse({"reason": str(exc)}, status_code=503, headers={"Retry-After": "5"})
    return EventStream(hub, subscriber, hub.send_timeout, view)


@router.get("/admin/taureau/whoami")
async def who(request: Request) -> dict[str, Any]:
    """The caller's role, whether it is a superuser, the tenants it administers and the
    namespaces where it holds a grant: what the dashboard shows it."""
    service: BrokerService = request.app.state.service
    return await whoami(service.authorization, service.resources, _role(request))


def _role(request: Request) -> str | None:
    return getattr(request.state, "role", None)  # set by the admin API's Authenticate


def mount(app: FastAPI, hub: LiveHub, static: Path = assets.STATIC) -> None:
    """The page, its files and the live stream of `hub` on `app`."""
    app.state.live_hub = hub
    app.state.dashboard_static = static
    app.include_router(router)
    app.mount("/dashboard", StaticFiles(directory=static, check_dir=False), name="dashboard")


def install_dashboard(app: FastAPI, service: BrokerService, functions: FunctionWorker | None = None,
                      state_stats: Callable[[], dict[str, Any]] | None = None, **hub_options: Any) -> LiveHub:
    """Mount the dashboard of a broker, and of the functions worker and state controller
    beside it (`state_stats`: the controller's `stats`); the caller starts and stops the
    returned hub."""
    sources: list[Callable[[], dict[str, Any]]] = []
    if functions is not None:
        sources.append(FunctionRates(functions))
    if state_stats is not None:
        sources.append(state_sample(state_stats))
    hub = LiveHub(combined(service, sources), **hub_options)
    mount(app, hub)
    return hub
