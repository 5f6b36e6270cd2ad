"""REST: Pulsar's `/admin/v3/functions/...` paths, and `POST /functions/{t}/{ns}/{name}` to
invoke a function over HTTP (request in, result out)."""

from __future__ import annotations

import base64
import json
from typing import Any

import yaml
from fastapi import APIRouter, FastAPI, File, Form, Request, Response, UploadFile
from fastapi.responses import JSONResponse

from taureau.functions import errors
from taureau.functions.config import FunctionConfig
from taureau.functions.deployment import state_answer
from taureau.functions.packages import MAX_PACKAGE_BYTES
from taureau.functions.state_ops import check_key
from taureau.functions.worker import FunctionWorker, Upload

router = APIRouter(prefix="/admin/v3/functions", tags=["functions"])
invoke_router = APIRouter(prefix="/functions", tags=["functions"])
worker_router = APIRouter(prefix="/admin/v2/worker", tags=["functions"])

MAX_INVOKE_BYTES = 5 * 1024 * 1024  # Pulsar's default max message size
MAX_STATE_OP_BYTES = 2 * 1024 * 1024  # a state value is at most 1 MiB (state_table.py)

_STATUS: list[tuple[type[Exception], int]] = [
    (errors.FunctionNotFoundError, 404),
    (errors.StateKeyNotFoundError, 404),
    (errors.FunctionExistsError, 409),
    (errors.FunctionConfigError, 400),
    (errors.FunctionCodeError, 400),
    (errors.FunctionStateError, 400),
    (errors.FunctionNotRunningError, 503),
    (errors.FunctionTimeoutError, 504),
    (errors.FunctionInvocationError, 500),
]


def install(app: FastAPI, worker: FunctionWorker) -> None:
    """Mount the routers on an app (the broker's admin app, or the worker's own)."""
    app.state.functions = worker
    # Packages are bigger than the admin API's usual bodies (python-multipart spools them to disk).
    limits = getattr(app.state, "body_limits", None)
    if limits is not None:
        limits["/admin/v3/functions/"] = MAX_PACKAGE_BYTES + 1024 * 1024

    @app.exception_handler(errors.FunctionError)
    async def function_error(request: Request, exc: errors.FunctionError) -> JSONResponse:
        status = next((code for cls, code in _STATUS if isinstance(exc, cls)), 500)
        body: dict[str, Any] = {"reason": str(exc)}
        if isinstance(exc, errors.FunctionElsewhereError):  # the same call at the worker serving it
            location = exc.url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return JSONResponse(body, status_code=307, headers={"Location": location})
        if isinstance(exc, errors.FunctionInvocationError) and exc.trace:
            body["stackTrace"] = exc.trace
        return JSONResponse(body, status_code=status)

    app.include_router(router)
    app.include_router(invoke_router)
    app.include_router(worker_router)


def _worker(request: Request) -> FunctionWorker:
    return request.app.state.functions


def _fqfn(tenant: str, namespace: str, name: str) -> str:
    return f"{tenant}/{namespace}/{name}"


def _parse_config(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            raise errors.FunctionConfigError("functionConfig is neither JSON nor YAML") from None
    if not isinstance(data, dict):
        raise errors.FunctionConfigError("functionConfig must be an object")
    return data


async def _read(upload: UploadFile | None, limit: int, what: str) -> bytes | None:
    if upload is None:
        return None
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise errors.FunctionCodeError(f"{what} is over {limit} bytes")
    return data


async def _upload(data: UploadFile | None, requirements: UploadFile | None) -> Upload | None:
    code = await _read(data, MAX_PACKAGE_BYTES, "the package")
    if code is None:
        return None
    return Upload(data.filename or "" if data else "", code, await _read(requirements, 1024 * 1024, "requirements"))


@router.post("/{tenant}/{namespace}/{name}", status_code=204)
async def register(request: Request, tenant: str, namespace: str, name: str,
                   data: UploadFile | None = File(None), functionConfig: str | None = Form(None),  # noqa: N803
                   requirements: UploadFile | None = File(None), url: str | None = Form(None)) -> Response:
    if url:
        raise errors.FunctionConfigError("package URLs are not supported; upload the file as `data`")
    raw = _parse_config(functionConfig)
    raw.update({"tenant": tenant, "namespace": namespace, "name": name})
    config = FunctionConfig.from_dict(raw)
    upload = await _upload(data, requirements)
    if upload is None:
        raise errors.FunctionCodeError("no package: upload the .py, .zip or .whl file as `data`")
    await _worker(request).create(config, upload)
    return Response(status_code=204)


@router.put("/{tenant}/{namespace}/{name}", status_code=204)
async def update(request: Request, tenant: str, namespace: str, name: str,
                 data: UploadFile | None = File(None), functionConfig: str | None = Form(None),  # noqa: N803
                 requirements: UploadFile | None = File(None), updateOptions: str | None = Form(None)) -> Response:  # noqa: N803
    changes = _parse_config(functionConfig)
    for key, value in (("tenant", tenant), ("namespace", namespace), ("name", name)):
        if changes.get(key, value) != value:
            raise errors.FunctionConfigError(f"{key} in the config ({changes[key]!r}) differs from the path")
    await _worker(request).update(_fqfn(tenant, namespace, name), changes, await _upload(data, requirements))
    return Response(status_code=204)


@router.delete("/{tenant}/{namespace}/{name}", status_code=204)
async def deregister(request: Request, tenant: str, namespace: str, name: str) -> Response:
    await _worker(request).delete(_fqfn(tenant, namespace, name))
    return Response(status_code=204)


@router.get("/{tenant}/{namespace}/{name}")
async def get_config(request: Request, tenant: str, namespace: str, name: str) -> dict:
    record = await _worker(request).get(_fqfn(tenant, namespace, name))
    return record.config.to_dict()


@router.get("/{tenant}/{namespace}")
async def list_functions(request: Request, tenant: str, namespace: str) -> list[str]:
    return await _worker(request).list(tenant, namespace)


@router.get("/{tenant}/{namespace}/{name}/status")
async def status(request: Request, tenant: str, namespace: str, name: str) -> dict:
    return await _worker(request).status_anywhere(_fqfn(tenant, namespace, name))


@router.get("/{tenant}/{namespace}/{name}/{instance_id:int}/status")
async def instance_status(request: Request, tenant: str, namespace: str, name: str, instance_id: int) -> dict:
    return await _worker(request).status_anywhere(_fqfn(tenant, namespace, name), instance_id)


@router.get("/{tenant}/{namespace}/{name}/stats")
async def stats(request: Request, tenant: str, namespace: str, name: str) -> dict:
    return await _worker(request).status_anywhere(_fqfn(tenant, namespace, name), what="stats")


@router.get("/{tenant}/{namespace}/{name}/{instance_id:int}/stats")
async def instance_stats(request: Request, tenant: str, namespace: str, name: str, instance_id: int) -> dict:
    return await _worker(request).status_anywhere(_fqfn(tenant, namespace, name), instance_id, "stats")


@router.post("/{tenant}/{namespace}/{name}/trigger")
async def trigger(request: Request, tenant: str, namespace: str, name: str,
                  data: str | None = Form(None), dataStream: UploadFile | None = File(None),  # noqa: N803
                  topic: str | None = Form(None)) -> Response:
    if data is not None:
        value = data.encode()
    else:
        value = await _read(dataStream, MAX_INVOKE_BYTES, "dataStream") or b""
    result = await _worker(request).trigger(_fqfn(tenant, namespace, name), value, topic)
    if result is None:
        return Response(status_code=204)
    return Response(result, media_type="application/octet-stream")


def _state_json(key: str, cell: Any) -> dict[str, Any]:
    from taureau.functions.state_ops import decode_counter

    out: dict[str, Any] = {"key": key, "version": cell.version}
    if cell.counter:
        out["numberValue"] = decode_counter(key, cell.value)
        return out
    try:
        out["stringValue"] = cell.value.decode()
    except UnicodeDecodeError:
        out["byteValue"] = base64.b64encode(cell.value).decode()
    return out


@router.get("/{tenant}/{namespace}/{name}/state/{key:path}")
async def query_state(request: Request, tenant: str, namespace: str, name: str, key: str) -> dict:
    table = await _worker(request).table_anywhere(_fqfn(tenant, namespace, name))
    cell = table.cell(check_key(key))
    if cell is None:
        raise errors.StateKeyNotFoundError(f"no state for key {key!r}")
    return _state_json(key, cell)


@router.get("/{tenant}/{namespace}/{name}/state")
async def list_state(request: Request, tenant: str, namespace: str, name: str, prefix: str = "") -> list[str]:
    return (await _worker(request).table_anywhere(_fqfn(tenant, namespace, name))).keys(prefix)


@router.post("/{tenant}/{namespace}/{name}/state/{key:path}", status_code=204)
async def put_state(request: Request, tenant: str, namespace: str, name: str, key: str,
                    state: str = Form(...)) -> Response:
    table = await _worker(request).table_anywhere(_fqfn(tenant, namespace, name))
    try:
        body = json.loads(state)
    except ValueError:
        raise errors.FunctionStateError("state must be a JSON FunctionState object") from None
    if not isinstance(body, dict):
        raise errors.FunctionStateError("state must be a JSON FunctionState object")
    if body.get("key", key) != key:
        raise errors.FunctionStateError("the key in the body differs from the path")
    if body.get("numberValue") is not None:
        if not isinstance(body["numberValue"], int) or isinstance(body["numberValue"], bool):
            raise errors.FunctionStateError("numberValue must be an integer")
        await table.set_counter(key, body["numberValue"])
    elif body.get("byteValue") is not None:
        try:
            value = base64.b64decode(body["byteValue"], validate=True)
        except (ValueError, TypeError):
            raise errors.FunctionStateError("byteValue must be base64") from None
        await table.put(key, value)
    elif isinstance(body.get("stringValue"), str):
        await table.put(key, body["stringValue"].encode())
    else:
        raise errors.FunctionStateError("state needs stringValue, byteValue or numberValue")
    return Response(status_code=204)


@router.delete("/{tenant}/{namespace}/{name}/state/{key:path}", status_code=204)
async def delete_state(request: Request, tenant: str, namespace: str, name: str, key: str) -> Response:
    await (await _worker(request).table_anywhere(_fqfn(tenant, namespace, name))).delete(key)
    return Response(status_code=204)


@router.get("/{tenant}/{namespace}/{name}/download")
async def download(request: Request, tenant: str, namespace: str, name: str) -> Response:
    worker = _worker(request)
    record = await worker.get(_fqfn(tenant, namespace, name))
    return Response(worker.packages.read(record.package), media_type="application/octet-stream",
                    headers={"Content-Disposition": f'attachment; filename="{record.package.filename}"'})


@router.post("/{tenant}/{namespace}/{name}/state-op")
async def state_op(request: Request, tenant: str, namespace: str, name: str, op: str, key: str = "",
                   amount: int = 0) -> Any:
    """Taureau's, between the workers of a cluster: one instance's state op (as it sends it to
    its own worker) at the worker holding the function's table; the body is the op's value."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_STATE_OP_BYTES:
            return JSONResponse({"reason": f"request body is over {MAX_STATE_OP_BYTES} bytes"}, status_code=413)
    deployment = await _worker(request).here(_fqfn(tenant, namespace, name), 0)
    answer, blob = await state_answer(deployment.table, {"op": op, "key": key, "amount": amount}, bytes(body))
    return {"header": answer, "blob": base64.b64encode(blob).decode()}


# The catch-all action routes come last, after every literal route of the same shape.
async def _lifecycle(request: Request, fqfn: str, action: str, instance_id: int | None) -> Response:
    worker = _worker(request)
    if action == "restart":
        await worker.restart(fqfn, instance_id)
    else:
        await worker.set_running(fqfn, action == "start", instance_id)
    return Response(status_code=204)


@router.post("/{tenant}/{namespace}/{name}/{action:str}", status_code=204)
async def lifecycle(request: Request, tenant: str, namespace: str, name: str, action: str) -> Response:
    if action not in ("start", "stop", "restart"):
        return JSONResponse({"reason": f"unknown action {action!r}"}, status_code=404)
    return await _lifecycle(request, _fqfn(tenant, namespace, name), action, None)


@router.post("/{tenant}/{namespace}/{name}/{instance_id:int}/{action:str}", status_code=204)
async def instance_lifecycle(request: Request, tenant: str, namespace: str, name: str, instance_id: int,
                             action: str) -> Response:
    if action not in ("start", "stop", "restart"):
        return JSONResponse({"reason": f"unknown action {action!r}"}, status_code=404)
    return await _lifecycle(request, _fqfn(tenant, namespace, name), action, instance_id)


@worker_router.put("/rebalance", status_code=204)
async def rebalance(request: Request) -> Response:
    """Pulsar's `functions-worker rebalance`: every instance placed anew over the live workers
    (a worker alone has nothing to move)."""
    member = _worker(request).member
    if member is not None:
        await member.cluster.request_rebalance()
    return Response(status_code=204)


@invoke_router.post("/{tenant}/{namespace}/{name}")
async def invoke(request: Request, tenant: str, namespace: str, name: str, timeout_ms: int = 30_000) -> Response:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_INVOKE_BYTES:
            return JSONResponse({"reason": f"request body is over {MAX_INVOKE_BYTES} bytes"}, status_code=413)
    if not 1 <= timeout_ms <= 300_000:
        raise errors.FunctionConfigError("timeout_ms must be between 1 and 300000")
    has_value, result = await _worker(request).invoke(_fqfn(tenant, namespace, name), bytes(body), timeout_ms / 1000)
    if not has_value:
        return Response(status_code=204)
    return Response(result, media_type="application/octet-stream")
