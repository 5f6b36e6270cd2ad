"""How the CLI authenticates, with pulsar-admin's and pulsar-client's options:
`--auth-plugin` (token, basic, tls, or the Java class names Pulsar's tools take) and
`--auth-params` (`token:XXX` or `file:///path/to/token`; `{"userId":"u","password":"p"}` or
`userId:u,password:p`; `tlsCertFile:...,tlsKeyFile:...`), `--tls-trust-cert-path` for https://
and pulsar+ssl:// servers. Environment: TAUREAU_AUTH_PLUGIN, TAUREAU_AUTH_PARAMS,
TAUREAU_TLS_TRUST_CERT_PATH. Credentials are never printed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
from dataclasses import dataclass
from typing import Any

_PLUGINS = {
    "token": "token",
    "org.apache.pulsar.client.impl.auth.AuthenticationToken": "token",
    "basic": "basic",
    "org.apache.pulsar.client.impl.auth.AuthenticationBasic": "basic",
    "tls": "tls",
    "org.apache.pulsar.client.impl.auth.AuthenticationTls": "tls",
}


class CredentialsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ClientAuth:
    method: str | None = None  # None: no authentication
    token: str | None = None
    user: str | None = None
    password: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    trust_file: str | None = None

    def http_headers(self) -> dict[str, str]:
        if self.method == "token":
            return {"Authorization": f"Bearer {self.token}"}
        if self.method == "basic":
            pair = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}
        return {}

    def http_options(self) -> dict[str, Any]:
        """httpx.Client keyword arguments: headers, the client certificate, the trusted CA."""
        options: dict[str, Any] = {"headers": self.http_headers()}
        if self.method == "tls" or self.trust_file:
            context = ssl.create_default_context(cafile=self.trust_file)
            if self.method == "tls":
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
            options["verify"] = context
        return options

    def state_options(self) -> dict[str, Any]:
        """StateClient keyword arguments (the state store takes tokens and basic users)."""
        if self.method == "token":
            return {"token": self.token}
        if self.method == "basic":
            return {"basic": (self.user, self.password)}
        if self.method == "tls":
            raise CredentialsError("the state store takes token or basic credentials, not tls")
        return {}

    def pulsar_options(self) -> dict[str, Any]:
        """pulsar.Client keyword arguments."""
        import pulsar

        options: dict[str, Any] = {}
        if self.method == "token":
            options["authentication"] = pulsar.AuthenticationToken(self.token)
        elif self.method == "basic":
            options["authentication"] = pulsar.AuthenticationBasic(self.user, self.password)
        elif self.method == "tls":
            options["authentication"] = pulsar.AuthenticationTLS(self.cert_file, self.key_file)
        if self.trust_file:
            options["tls_trust_certs_file_path"] = self.trust_file
        return options


def _pairs(text: str) -> dict[str, str]:
    text = text.strip()
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CredentialsError(f"--auth-params is not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise CredentialsError("--auth-params JSON must be an object")
        return {str(k): str(v) for k, v in data.items()}
    found = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition(":")
        if not sep:
            raise CredentialsError("--auth-params must be key:value,... or JSON")
        found[key.strip()] = value.strip()
    return found


def _token(params: str) -> str:
    params = params.strip()
    if params.startswith("file://"):
        path = params.removeprefix("file://")
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as exc:
            raise CredentialsError(f"cannot read token file {path}: {exc.strerror}") from None
    return params.removeprefix("token:").strip()


def client_auth(plugin: str | None, params: str | None, trust_file: str | None = None) -> ClientAuth:
    if not plugin:
        if params:
            raise CredentialsError("--auth-params needs --auth-plugin")
        return ClientAuth(trust_file=trust_file)
    method = _PLUGINS.get(plugin)
    if method is None:
        raise CredentialsError(f"unknown --auth-plugin {plugin!r} (token, basic or tls)")
    params = params or ""
    if method == "token":
        token = _token(params)
        if not token:
            raise CredentialsError("--auth-plugin token needs --auth-params token:XXX or file:///path")
        return ClientAuth("token", token=token, trust_file=trust_file)
    pairs = _pairs(params)
    if method == "basic":
        if "userId" not in pairs or "password" not in pairs:
            raise CredentialsError('--auth-plugin basic needs --auth-params {"userId":"u","password":"p"}')
        return ClientAuth("basic", user=pairs["userId"], password=pairs["password"], trust_file=trust_file)
    if "tlsCertFile" not in pairs or "tlsKeyFile" not in pairs:
        raise CredentialsError("--auth-plugin tls needs --auth-params tlsCertFile:PATH,tlsKeyFile:PATH")
    return ClientAuth("tls", cert_file=pairs["tlsCertFile"], key_file=pairs["tlsKeyFile"], trust_file=trust_file)


def add_options(parser: argparse.ArgumentParser, after_verb: bool = False) -> None:
    """The options, before the verb (with environment defaults) or after it (given there, they win)."""
    env = os.environ.get
    defaults = (
        (argparse.SUPPRESS,) * 3 if after_verb
        else (env("TAUREAU_AUTH_PLUGIN"), env("TAUREAU_AUTH_PARAMS"), env("TAUREAU_TLS_TRUST_CERT_PATH"))
    )
    parser.add_argument("--auth-plugin", default=defaults[0], help="token, basic or tls (env TAUREAU_AUTH_PLUGIN)")
    parser.add_argument("--auth-params", default=defaults[1],
                        help="token:XXX, file:///token-file, JSON or key:value,... (env TAUREAU_AUTH_PARAMS)")
    parser.add_argument("--tls-trust-cert-path", default=defaults[2],
                        help="CA file trusted for https:// and pulsar+ssl:// (env TAUREAU_TLS_TRUST_CERT_PATH)")


def from_args(args: argparse.Namespace) -> ClientAuth:
    return client_auth(getattr(args, "auth_plugin", None), getattr(args, "auth_params", None),
                       getattr(args, "tls_trust_cert_path", None))
