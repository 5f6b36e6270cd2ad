"""The state store's view of the broker's security (taureau.state.client_auth.StateAccess):
its clients authenticate with the broker's providers, and their grants are the broker's."""

from __future__ import annotations

from taureau.auth.providers import AuthenticationService, Credentials
from taureau.broker.authorization import AuthorizationService
from taureau.broker.session_auth import identify
from taureau.common.errors import InvalidTopicNameError
from taureau.common.names import NamespaceName


class BrokerStateAccess:
    def __init__(self, authentication: AuthenticationService, authorization: AuthorizationService) -> None:
        self.authentication = authentication
        self.authorization = authorization

    async def identify(self, method: str, data: bytes) -> tuple[str, float | None]:
        who = await identify(self.authentication, Credentials(method, data))
        return who.role, who.expires_at

    def is_superuser(self, role: str) -> bool:
        return self.authorization.is_superuser(role)

    async def is_tenant_admin(self, role: str, tenant: str) -> bool:
        return await self.authorization.is_tenant_admin(role, tenant)

    async def may_use_functions(self, role: str, tenant: str, namespace: str) -> bool:
        try:
            ns = NamespaceName.parse(f"{tenant}/{namespace}")
        except InvalidTopicNameError:
            return False  # no such namespace can exist, so nothing is granted on it
        return await self.authorization.can_namespace(role, ns, "functions")
