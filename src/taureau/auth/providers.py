"""Authentication providers, by the method names Pulsar's clients send: `token`, `basic`,
`tls`. Each turns what a client presents into a role, or raises AuthenticationError."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import bcrypt

from taureau.auth.roles import is_reserved, reserved_error_text
from taureau.auth.tokens import TokenVerifier
from taureau.common.errors import AuthenticationError


@dataclass(frozen=True, slots=True)
class Credentials:
    method: str  # "token", "basic", "tls"
    data: bytes = b""  # the token, or "user:password"
    peer_common_name: str | None = None  # the CN of a verified client certificate


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a client proved to be, and until when (a token's `exp`; None: for good)."""

    role: str
    expires_at: float | None = None


class AuthenticationProvider(Protocol):
    @property
    def method(self) -> str: ...

    def authenticate(self, credentials: Credentials) -> str: ...


def identify(provider: AuthenticationProvider, credentials: Credentials) -> Identity:
    """The provider's `identify` when it knows an expiry, else its role for good."""
    method = getattr(provider, "identify", None)
    if method is not None:
        return method(credentials)
    return Identity(provider.authenticate(credentials))


class TokenProvider:
    """Tokens signed by any of `verifiers` (the operator's key, and the process's internal
    key its own components and functions are minted tokens with)."""

    method = "token"

    def __init__(self, *verifiers: TokenVerifier, internal: TokenVerifier | None = None) -> None:
        if not verifiers:
            raise ValueError("token authentication needs a key")
        self.verifiers = verifiers
        self.internal = internal  # the only key whose tokens may carry a reserved role (roles.py)

    @property
    def verifier(self) -> TokenVerifier:
        return self.verifiers[0]

    def authenticate(self, credentials: Credentials) -> str:
        return self.identify(credentials).role

    def identify(self, credentials: Credentials) -> Identity:
        token = credentials.data.decode("utf-8", errors="replace").strip()
        token = token.removeprefix("Bearer ").strip()
        if not token:
            raise AuthenticationError("no token given")
        errors: list[AuthenticationError] = []
        for verifier in self.verifiers:
            try:
                role, expires_at = verifier.identity(token)
            except AuthenticationError as exc:
                errors.append(exc)
                continue
            if is_reserved(role) and verifier is not self.internal:
                raise AuthenticationError(reserved_error_text(role))
            return Identity(role, expires_at)
        # The most telling reason: one where the signature matched (expired, no subject).
        telling = [e for e in errors if "signature does not match" not in str(e)]
        raise (telling or errors)[0]


@dataclass(slots=True)
class BasicProvider:
    """Users from an htpasswd file: bcrypt (`$2y$`, `$2b$`) or apr1 (`$apr1$`) hashes."""

    users: dict[str, str] = field(default_factory=dict)  # user -> hash
    method: str = "basic"

    @classmethod
    def from_htpasswd(cls, text: str) -> BasicProvider:
        users = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            user, sep, hashed = line.partition(":")
            if not sep or not user or not hashed.startswith(("$2y$", "$2b$", "$2a$", "$apr1$")):
                raise ValueError(f"htpasswd line {number}: expected user:$2y$... (bcrypt) or user:$apr1$...")
            users[user] = hashed
        return cls(users)

    def authenticate(self, credentials: Credentials) -> str:
        user, sep, password = credentials.data.decode("utf-8", errors="replace").partition(":")
        hashed = self.users.get(user)
        if not sep or hashed is None or not _check(password, hashed):
            raise AuthenticationError("unknown user or wrong password")
        return user


def _check(password: str, hashed: str) -> bool:
    if hashed.startswith("$apr1$"):
        from passlib.hash import apr_md5_crypt

        return bool(apr_md5_crypt.verify(password, hashed))
    return bcrypt.checkpw(password.encode(), hashed.replace("$2y$", "$2b$", 1).encode())


@dataclass(frozen=True, slots=True)
class TlsProvider:
    """Mutual TLS: the verified client certificate's common name is the role."""

    method: str = "tls"

    def authenticate(self, credentials: Credentials) -> str:
        if not credentials.peer_common_name:
            raise AuthenticationError("no verified client certificate")
        return credentials.peer_common_name


class AuthenticationService:
    """The providers a server accepts (several at once, as Pulsar allows)."""

    def __init__(self, providers: list[AuthenticationProvider]) -> None:
        self._providers = {p.method: p for p in providers}

    @property
    def enabled(self) -> bool:
        return bool(self._providers)

    @property
    def methods(self) -> list[str]:
        return sorted(self._providers)

    def authenticate(self, credentials: Credentials) -> str:
        return self.identify(credentials).role

    def identify(self, credentials: Credentials) -> Identity:
        provider = self._providers.get(credentials.method)
        if provider is None:
            raise AuthenticationError(
                f"authentication method {credentials.method or 'none'!r} is not accepted "
                f"(accepted: {', '.join(self.methods)})")
        identity = identify(provider, credentials)
        if provider.method != "token" and is_reserved(identity.role):  # tokens checked their key
            raise AuthenticationError(reserved_error_text(identity.role))
        return identity
