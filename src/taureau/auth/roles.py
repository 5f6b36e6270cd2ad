"""The roles a server's own components act as. They are reserved: only a token signed with the
server's internal key may carry one, so no operator key, htpasswd user or certificate can
claim them (an operator-signed token for `taureau-internal` would otherwise be a superuser)."""

from __future__ import annotations

INTERNAL_ROLE = "taureau-internal"  # the server's own components; always a superuser
# A function's instances act as `function:tenant/namespace/name`.
FUNCTION_ROLE_PREFIX = "function:"


def function_role(tenant: str, namespace: str, name: str) -> str:
    return f"{FUNCTION_ROLE_PREFIX}{tenant}/{namespace}/{name}"


def is_reserved(role: str) -> bool:
    return role == INTERNAL_ROLE or role.startswith(FUNCTION_ROLE_PREFIX)


def reserved_error_text(role: str) -> str:
    return f"role {role} is reserved for the server's own components"
