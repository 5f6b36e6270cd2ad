"""Build the FastAPI application and map Taureau errors to HTTP statuses with a reason."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from taureau.broker.admin import (
    cluster,
    limits,
    lookup,
    metrics,
    namespaces,
    nonpersistent,
    permissions,
    persistence,
    policy_routes,
    replication,
    schemas,
    tenants,
    topics,
    transactions,
)
from taureau.broker.admin.authn import Authenticate
from taureau.broker.admin.authz import Authorize
from taureau.broker.admin.body_limit import BodyLimit
from taureau.broker.admin.paths import KeepEncodedSlashes
from taureau.broker.compaction.topic_compaction import CompactionInProgressError
from taureau.broker.ownership import rest as ownership_rest
from taureau.broker.ownership.rest import RedirectToOwner
from taureau.broker.replication.clusters import (
    ClusterConflictError,
    ClusterInUseError,
    ClusterNotFoundError,
    UnknownReplicationClusterError,
)
from taureau.broker.resources import (
    ConflictError,
    PartitionLimitError,
    PreconditionFailedError,
    ResourceNotFoundError,
)
from taureau.broker.schemas.model import IncompatibleSchemaError, InvalidSchemaError, SchemaNotFoundError
from taureau.broker.service import BrokerService
from taureau.broker.topic import SubscriptionBusyError
from taureau.common.errors import (
    AuthenticationError,
    AuthorizationError,
    InvalidTopicNameError,
    MetadataValueTooLargeError,
    NotAllowedError,
    ServiceNotReadyError,
    SubscriptionNotFoundError,
    TaureauError,
    TopicNotFoundError,
)
from taureau.protocol import ProtocolError

_STATUS = [
    (MetadataValueTooLargeError, 413),
    (SchemaNotFoundError, 404),
    (InvalidSchemaError, 422),  # before its parent: a definition nobody can read
    (IncompatibleSchemaError, 409),
    (ResourceNotFoundError, 404),
    (ClusterNotFoundError, 404),
    (ClusterConflictError, 409),
    (ClusterInUseError, 412),
    (UnknownReplicationClusterError, 403),
    (TopicNotFoundError, 404),
    (SubscriptionNotFoundError, 404),
    (ConflictError, 409),
    (CompactionInProgressError, 409),
    (PreconditionFailedError, 412),
    (SubscriptionBusyError, 412),
    # Pulsar answers 412 for an invalid name; Taureau answers 400, a bad request (issue 7).
    (InvalidTopicNameError, 400),
    (PartitionLimitError, 406),
    (NotAllowedError, 405),
    (AuthenticationError, 401),
    (AuthorizationError, 403),
    (ServiceNotReadyError, 503),
]


def status_for(exc: Exception) -> int:
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    if isinstance(exc, ValueError):  # an argument a lower layer refused (StorageArgumentError...)
        return 400
    return 500


def build_admin_app(service: BrokerService) -> FastAPI:
    app = FastAPI(
        title="Taureau admin API",
        version="0.1.0",
        description="Pulsar-compatible /admin/v2 REST API of a Taureau broker.",
    )
    app.state.service = service
    # Routes above the broker that take files (function packages) raise their own limit here.
    app.state.body_limits = {}
    app.add_middleware(BodyLimit, max_bytes=service.config.max_http_request_bytes, larger=app.state.body_limits)
    app.add_middleware(RedirectToOwner)  # inside authentication: only callers who may ask learn the owner

    @app.exception_handler(TaureauError)
    async def taureau_error(_: Request, exc: TaureauError) -> JSONResponse:
        return JSONResponse({"reason": str(exc)}, status_code=status_for(exc))

    @app.exception_handler(ProtocolError)
    async def stored_data_error(_: Request, exc: ProtocolError) -> JSONResponse:
        # A stored entry the broker cannot read (corrupt, or an unknown codec): say so.
        return JSONResponse({"reason": f"cannot decode the stored message: {exc}"}, status_code=500)

    @app.exception_handler(ValueError)
    async def value_error(_: Request, exc: ValueError) -> JSONResponse:
        return JSONResponse({"reason": str(exc)}, status_code=400)

    # Before the topic routes: /{topic}/permissions must not be taken for a subscription path.
    app.include_router(permissions.namespaces)
    app.include_router(permissions.topics)
    app.include_router(permissions.non_persistent_topics)
    app.include_router(tenants.router)
    app.include_router(ownership_rest.router)  # before namespaces: .../{bundle}/unload
    app.include_router(replication.router)  # before namespaces: .../{ns}/replication
    app.include_router(namespaces.router)
    app.include_router(limits.router)
    app.include_router(policy_routes.namespaces)
    app.include_router(policy_routes.topics)
    app.include_router(persistence.namespaces)
    app.include_router(persistence.topics)
    app.include_router(topics.router)
    app.include_router(nonpersistent.router)
    app.include_router(schemas.router)
    app.include_router(metrics.router)
    app.include_router(lookup.router)
    app.include_router(transactions.router)
    app.include_router(cluster.router)
    # Filled by the HTTPS server: a TLS connection's client address -> its certificate's CN.
    peers: dict[Any, str] = {}
    app.state.tls_peer_names = peers
    if service.authentication is not None:
        # Inside KeepEncodedSlashes, outside the body limit: a refused request reads no body.
        app.add_middleware(Authorize, authorization=service.authorization)
        app.add_middleware(Authenticate, service=service.authentication,
                           peer_name=lambda scope: peers.get(tuple(scope.get("client") or ())))
    app.add_middleware(KeepEncodedSlashes)
    return app
