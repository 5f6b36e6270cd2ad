"""REST for sketches, on the admin port beside `/admin/v3/functions`:

| | |
|---|---|
| `GET /admin/v3/sketches/kinds` | kinds and their parameters |
| `GET /admin/v3/sketches/{t}/{ns}` | the sketches of a namespace |
| `POST /admin/v3/sketches/{t}/{ns}/{name}` (JSON SketchSpec) | create: a sketch function |
| `GET` / `DELETE /admin/v3/sketches/{t}/{ns}/{name}` | spec, windows and status / delete |
| `GET .../{name}/query?key=&top=&quantiles=&ranks=&distinct=&contains=&sample=&windows=&window=` | answer |
| `GET .../{name}/sketch?windows=&window=` | the merged sketch's bytes (DataSketches' format) |

A sketch is a function run by the functions worker; these routes call the worker's API and
read the merged windows from the function's durable state.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from taureau.functions.broker_admin import BrokerAdminError
from taureau.functions.config import FunctionConfig
from taureau.functions.errors import FunctionNotFoundError
from taureau.functions.worker import FunctionWorker, Upload
from taureau.sketches import registry
from taureau.sketches.base import MAX_QUERY_ITEMS, Query, Sketch
from taureau.sketches.errors import SketchError, SketchParamError, SketchQueryError
from taureau.sketches.function import STATE_PREFIX, state_key, window_of
from taureau.sketches.spec import SHIM, SHIM_FILE, SketchSpec, check_names, spec_of

router = APIRouter(prefix="/admin/v3/sketches", tags=["sketches"])


class SketchNotFoundError(SketchError):
    """No sketch of that name (or a function that is not a sketch)."""


class NoWindowError(SketchError):
    """No window of the sketch has been merged yet (or not the one asked for)."""


_STATUS: list[tuple[type[Exception], int]] = [
    (SketchNotFoundError, 404),
    (NoWindowError, 404),
    (SketchError, 400),
]


def install(app: FastAPI, worker: FunctionWorker) -> None:
    app.state.sketch_worker = worker

    @app.exception_handler(SketchError)
    async def sketch_error(_: Request, exc: SketchError) -> JSONResponse:
        status = next(code for cls, code in _STATUS if isinstance(exc, cls))
        return JSONResponse({"reason": str(exc)}, status_code=status)

    app.include_router(router)


def _worker(request: Request) -> FunctionWorker:
    return request.app.state.sketch_worker


async def _spec(worker: FunctionWorker, fqfn: str) -> SketchSpec:
    try:
        record = await worker.get(fqfn)
    except FunctionNotFoundError:
        raise SketchNotFoundError(f"sketch {fqfn} does not exist") from None
    spec = spec_of(record.config.user_config)
    if spec is None:
        raise SketchNotFoundError(f"{fqfn} is a function, not a sketch")
    return spec


_names = check_names


@router.get("/kinds")
async def list_kinds() -> dict[str, Any]:
    return {name: {"input": registry.kind(name).input, "weighted": registry.kind(name).weighted,
                   "queries": sorted(registry.kind(name).queries), "params": dict(registry.kind(name).defaults)}
            for name in registry.kinds()}


@router.get("/{tenant}/{namespace}")
async def list_sketches(tenant: str, namespace: str, request: Request) -> list[dict[str, Any]]:
    _names(tenant, namespace)
    worker = _worker(request)
    out = []
    for name in await worker.list(tenant, namespace):
        with contextlib.suppress(SketchNotFoundError, FunctionNotFoundError):
            spec = await _spec(worker, f"{tenant}/{namespace}/{name}")
            out.append({"name": spec.name, "kind": spec.kind, "inputs": spec.inputs})
    return out


@router.post("/{tenant}/{namespace}/{name}")
async def create_sketch(tenant: str, namespace: str, name: str, request: Request) -> Response:
    try:
        body = await request.json()
    except ValueError:
        raise SketchParamError("the body is a JSON sketch spec") from None
    if not isinstance(body, dict):
        raise SketchParamError("the body is a JSON sketch spec")
    body = {**body, "tenant": tenant, "namespace": namespace, "name": name}
    spec = SketchSpec.from_dict(body)
    worker = _worker(request)
    with contextlib.suppress(FunctionNotFoundError):
        await worker.get(spec.fqfn)
        raise SketchParamError(f"{spec.fqfn} exists already")
    # A replacement finalizer republishes a window the broker must drop: de-duplication.
    try:
        await worker.broker.enable_deduplication(spec.output_topic)
    except BrokerAdminError as exc:
        raise SketchParamError(str(exc)) from None
    config = FunctionConfig.from_dict(spec.function_config())
    await worker.create(config, Upload(SHIM_FILE, SHIM))
    return Response(status_code=204)


@router.get("/{tenant}/{namespace}/{name}")
async def get_sketch(tenant: str, namespace: str, name: str, request: Request) -> dict[str, Any]:
    fqfn = _names(tenant, namespace, name)
    worker = _worker(request)
    spec = await _spec(worker, fqfn)
    status: dict[str, Any] = {}
    with contextlib.suppress(FunctionNotFoundError):
        status = worker.status(fqfn)
    return {"spec": spec.to_dict(), "outputTopic": spec.output_topic, "windows": _windows(worker, fqfn),
            "numInstances": status.get("numInstances"), "numRunning": status.get("numRunning")}


@router.delete("/{tenant}/{namespace}/{name}")
async def delete_sketch(tenant: str, namespace: str, name: str, request: Request) -> Response:
    fqfn = _names(tenant, namespace, name)
    worker = _worker(request)
    await _spec(worker, fqfn)
    await worker.delete(fqfn)
    return Response(status_code=204)


def _windows(worker: FunctionWorker, fqfn: str) -> list[int]:
    try:
        return [window_of(k) for k in sorted(worker.table(fqfn).keys(STATE_PREFIX))]
    except FunctionNotFoundError:
        return []


def _merged(worker: FunctionWorker, spec: SketchSpec, windows: int | None, window: int | None) -> tuple[Sketch, list[int]]:
    """The merge of the newest `windows` windows (default 1), or of the one ending at `window`."""
    ends = _windows(worker, spec.fqfn)
    if window is not None:
        if window not in ends:
            raise NoWindowError(f"sketch {spec.fqfn} keeps no window ending at {window}; it has {ends[-5:]}")
        chosen = [window]
    else:
        count = 1 if windows is None else windows
        if not 1 <= count <= spec.retained:
            raise SketchQueryError(f"windows must be 1..{spec.retained} (what the sketch keeps)")
        chosen = ends[-count:]
    if not chosen:
        raise NoWindowError(f"sketch {spec.fqfn} has merged no window yet (windows close "
                            f"{spec.window_ms + spec.grace_ms} ms after they open)")
    cls = registry.kind(spec.kind)
    table = worker.table(spec.fqfn)
    merged = cls.from_params(spec.params)
    for end in chosen:
        data = table.get(state_key(end))
        if data is not None:
            merged.merge(cls.from_bytes(data))
    return merged, chosen


def _floats(name: str, text: str | None) -> list[float]:
    if not text:
        return []
    parts = text.split(",")
    if len(parts) > MAX_QUERY_ITEMS:
        raise SketchQueryError(f"at most {MAX_QUERY_ITEMS} {name}")
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise SketchQueryError(f"{name} are comma-separated numbers, not {text!r}") from None


def _int(name: str, text: str | None) -> int | None:
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise SketchQueryError(f"{name} is an integer, not {text!r}") from None


@router.get("/{tenant}/{namespace}/{name}/query")
async def query_sketch(tenant: str, namespace: str, name: str, request: Request) -> dict[str, Any]:
    fqfn = _names(tenant, namespace, name)
    p = request.query_params
    query = Query(key=p.get("key"), top=_int("top", p.get("top")), quantiles=_floats("quantiles", p.get("quantiles")),
                  ranks=_floats("ranks", p.get("ranks")), distinct=p.get("distinct", "").lower() in ("1", "true"),
                  contains=p.get("contains"), sample=_int("sample", p.get("sample")))
    query.check()
    worker = _worker(request)
    spec = await _spec(worker, fqfn)
    merged, chosen = await asyncio.to_thread(_merged, worker, spec, _int("windows", p.get("windows")),
                                             _int("window", p.get("window")))
    answer = merged.answer(query)
    answer["windows"] = {"count": len(chosen), "firstStartMs": chosen[0] - spec.window_ms, "lastEndMs": chosen[-1]}
    return answer


@router.get("/{tenant}/{namespace}/{name}/sketch")
async def sketch_bytes(tenant: str, namespace: str, name: str, request: Request) -> Response:
    fqfn = _names(tenant, namespace, name)
    worker = _worker(request)
    spec = await _spec(worker, fqfn)
    p = request.query_params
    merged, chosen = await asyncio.to_thread(_merged, worker, spec, _int("windows", p.get("windows")),
                                             _int("window", p.get("window")))
    return Response(merged.to_bytes(), media_type="application/octet-stream",
                    headers={"X-Sketch-Kind": spec.kind, "X-Window-End-Ms": str(chosen[-1])})
