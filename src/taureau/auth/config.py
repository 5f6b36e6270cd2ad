"""What an operator configures for authentication (`taureau standalone --auth ...`), and the
AuthenticationService built from it.

Besides the operator's providers, a server with authentication on keeps an internal key that
never leaves its process: its own components (the functions worker calling the admin API,
function instances connecting to the broker) present tokens signed with it, so they work
whichever methods the operator chose, and each function gets a role of its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from taureau.auth.providers import (
    AuthenticationProvider,
    AuthenticationService,
    BasicProvider,
    TlsProvider,
    TokenProvider,
)
from taureau.auth.roles import INTERNAL_ROLE
from taureau.auth.tokens import TokenVerifier, create_secret_key, create_token, read_secret_key
from taureau.common.files import read_file
from taureau.common.private_files import open_private

METHODS = ("token", "basic", "tls")


@dataclass(slots=True)
class AuthConfig:
    methods: tuple[str, ...] = ()  # empty: authentication off
    token_secret_key_file: str | None = None
    token_public_key_file: str | None = None
    basic_auth_file: str | None = None
    superuser_roles: tuple[str, ...] = ()
    # Pulsar's authenticationRefreshCheckSeconds: how long an expired connection has to answer
    # AUTH_CHALLENGE with fresh credentials before it is closed.
    refresh_check_s: float = 60.0
    # Tokens minted for function instances expire after this long; the worker hands each
    # running instance a fresh one at half that (functions/supervisor.py).
    function_token_ttl_s: int = 3600
    internal_key: bytes = field(default_factory=create_secret_key, repr=False)

    @property
    def enabled(self) -> bool:
        return bool(self.methods)

    def check(self) -> None:
        """Refuse a configuration that cannot work, before anything listens."""
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown authentication method(s) {sorted(unknown)}; known: {', '.join(METHODS)}")
        if "token" in self.methods and (self.token_secret_key_file is None) == (self.token_public_key_file is None):
            raise ValueError("--auth token needs exactly one of --token-secret-key or --token-public-key")
        if "basic" in self.methods and not self.basic_auth_file:
            raise ValueError("--auth basic needs --basic-auth-file (an htpasswd file)")

    def is_superuser(self, role: str | None) -> bool:
        return role is not None and (role == INTERNAL_ROLE or role in self.superuser_roles)

    def internal_token(self, role: str = INTERNAL_ROLE, expires_in_s: int | None = None) -> str:
        """A token for one of this server's own components (or a function, by its role)."""
        return create_token(role, secret_key=self.internal_key, expires_in_s=expires_in_s)



def load_or_create_internal_key(path: str) -> bytes:
    """The internal key kept in `path` (created owner-only on first use): a standalone and a
    separate functions worker given the same file share it, so the worker can mint tokens for
    function roles the broker accepts (`--internal-key-file`)."""
    try:
        fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return read_secret_key(read_file(path))
    key = create_secret_key()
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    return key


def build_authentication(config: AuthConfig) -> AuthenticationService | None:
    """The service for `config`, or None when authentication is off."""
    if not config.enabled:
        return None
    config.check()
    providers: list[AuthenticationProvider] = []
    internal = TokenVerifier(secret_key=config.internal_key)
    if "token" in config.methods:
        if config.token_secret_key_file is not None:
            operator = TokenVerifier(secret_key=read_secret_key(read_file(config.token_secret_key_file)))
        else:
            operator = TokenVerifier(public_key=read_file(config.token_public_key_file or ""))
        providers.append(TokenProvider(operator, internal, internal=internal))
    else:
        providers.append(TokenProvider(internal, internal=internal))
    if "basic" in config.methods:
        text = read_file(config.basic_auth_file or "").decode("utf-8", errors="replace")
        providers.append(BasicProvider.from_htpasswd(text))
    if "tls" in config.methods:
        providers.append(TlsProvider())
    return AuthenticationService(providers)


def warn_if_readable(path: str) -> str | None:
    """A warning when a key file is readable by others (the key is then no secret)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & 0o077:
        return f"{path} is readable by group or others (mode {mode & 0o777:o}); chmod 600 it"
    return None
