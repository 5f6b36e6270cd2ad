"""/admin/v2/tenants: list, get, create, update, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request, Response

from taureau.broker.resources import parse_tenant_info

router = APIRouter(prefix="/admin/v2/tenants", tags=["tenants"])


def _resources(request: Request):
    return request.app.state.service.resources


@router.get("")
async def list_tenants(request: Request) -> list[str]:
    return await _resources(request).list_tenants()


@router.get("/{tenant}")
async def get_tenant(request: Request, tenant: str) -> dict:
    info = await _resources(request).get_tenant(tenant)
    return {"adminRoles": info.adminRoles, "allowedClusters": info.allowedClusters}


@router.put("/{tenant}", status_code=204)
async def create_tenant(request: Request, tenant: str, body: Any = Body(None)) -> Response:
    await _resources(request).create_tenant(tenant, parse_tenant_info(body))
    return Response(status_code=204)


@router.post("/{tenant}", status_code=204)
async def update_tenant(request: Request, tenant: str, body: Any = Body(None)) -> Response:
    await _resources(request).update_tenant(tenant, parse_tenant_info(body))
    return Response(status_code=204)


@router.delete("/{tenant}", status_code=204)
async def delete_tenant(request: Request, tenant: str) -> Response:
    await _resources(request).delete_tenant(tenant)
    return Response(status_code=204)
