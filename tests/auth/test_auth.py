"""Tokens, htpasswd and TLS providers, the service that picks one, and `taureau tokens`."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import time

import bcrypt
import jwt
import pytest
from passlib.hash import apr_md5_crypt

from taureau.auth import tokens
from taureau.auth.providers import (
    AuthenticationService,
    BasicProvider,
    Credentials,
    TlsProvider,
    TokenProvider,
)
from taureau.cli.app import run as cli
from taureau.common.errors import AuthenticationError


def test_hs256_token_round_trip_and_its_failures():
    key = tokens.create_secret_key()
    verifier = tokens.TokenVerifier(secret_key=key)
    assert verifier.role(tokens.create_token("app1", secret_key=key)) == "app1"
    with pytest.raises(AuthenticationError, match="signature does not match"):
        verifier.role(tokens.create_token("app1", secret_key=tokens.create_secret_key()))
    with pytest.raises(AuthenticationError, match="token expired"):
        verifier.role(jwt.encode({"sub": "app1", "exp": int(time.time()) - 10}, key, algorithm="HS256"))
    with pytest.raises(AuthenticationError, match="invalid token"):
        verifier.role("not.a.token")
    with pytest.raises(AuthenticationError, match="invalid token"):
        verifier.role(jwt.encode({"role": "app1"}, key, algorithm="HS256"))  # no sub claim
    unsigned = jwt.encode({"sub": "admin"}, None, algorithm="none")
    with pytest.raises(AuthenticationError, match="invalid token"):
        verifier.role(unsigned)


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
def test_key_pair_tokens(algorithm):
    private, public = tokens.create_key_pair(algorithm)
    token = tokens.create_token("svc", private_key=private, expires_in_s=60)
    assert tokens.TokenVerifier(public_key=public).role(token) == "svc"
    _, other_public = tokens.create_key_pair(algorithm)
    with pytest.raises(AuthenticationError, match="signature does not match"):
        tokens.TokenVerifier(public_key=other_public).role(token)


def test_secret_key_files_raw_or_base64():
    import base64

    key = tokens.create_secret_key()
    assert tokens.read_secret_key(key) == key
    assert tokens.read_secret_key(base64.b64encode(key) + b"\n") == key
    with pytest.raises(ValueError, match="at least 16 bytes"):
        tokens.read_secret_key(b"short")


def test_durations():
    assert [tokens.parse_duration(t) for t in ("90", "30s", "10m", "2h", "7d", "1w", "1y")] == [
        90, 30, 600, 7200, 604800, 604800, 31536000]
    with pytest.raises(ValueError, match="not a duration"):
        tokens.parse_duration("soon")


def test_basic_provider_with_bcrypt_and_apr1():
    text = (f"alice:{bcrypt.hashpw(b'wonder', bcrypt.gensalt()).decode().replace('$2b$', '$2y$')}\n"
            f"# a comment\nbob:{apr_md5_crypt.hash('builder')}\n")
    provider = BasicProvider.from_htpasswd(text)
    assert provider.authenticate(Credentials("basic", b"alice:wonder")) == "alice"
    assert provider.authenticate(Credentials("basic", b"bob:builder")) == "bob"
    for bad in (b"alice:nope", b"carol:x", b"no-colon"):
        with pytest.raises(AuthenticationError, match="unknown user or wrong password"):
            provider.authenticate(Credentials("basic", bad))
    with pytest.raises(ValueError, match="htpasswd line 1"):
        BasicProvider.from_htpasswd("dave:plaintext\n")


def test_service_picks_the_provider_by_method():
    key = tokens.create_secret_key()
    service = AuthenticationService([TokenProvider(tokens.TokenVerifier(secret_key=key)), TlsProvider()])
    assert service.methods == ["tls", "token"]
    assert service.authenticate(Credentials("token", tokens.create_token("t1", secret_key=key).encode())) == "t1"
    assert service.authenticate(Credentials("tls", peer_common_name="client-a")) == "client-a"
    with pytest.raises(AuthenticationError, match="no verified client certificate"):
        service.authenticate(Credentials("tls"))
    with pytest.raises(AuthenticationError, match="method 'basic' is not accepted"):
        service.authenticate(Credentials("basic", b"a:b"))
    with pytest.raises(AuthenticationError, match="method 'none' is not accepted"):
        service.authenticate(Credentials(""))


@pytest.mark.parametrize("role", ["taureau-internal", "function:acme/ns/f"])
def test_reserved_roles_only_from_the_internal_key(role):
    operator, internal = tokens.create_secret_key(), tokens.create_secret_key()
    # An htpasswd user name cannot hold ':', so only the internal role can be named there.
    users = f"taureau-internal:{bcrypt.hashpw(b'pw', bcrypt.gensalt(4)).decode()}\n"
    service = AuthenticationService([
        TokenProvider(tokens.TokenVerifier(secret_key=operator), tokens.TokenVerifier(secret_key=internal),
                      internal=None),
        BasicProvider.from_htpasswd(users), TlsProvider(),
    ])
    reserved = f"role {role} is reserved for the server's own components"
    for credentials in (Credentials("token", tokens.create_token(role, secret_key=operator).encode()),
                        Credentials("tls", peer_common_name=role)):
        with pytest.raises(AuthenticationError, match=reserved):
            service.authenticate(credentials)
    with pytest.raises(AuthenticationError, match="role taureau-internal is reserved"):
        service.authenticate(Credentials("basic", b"taureau-internal:pw"))
    trusted_key = tokens.TokenVerifier(secret_key=internal)
    trusted = TokenProvider(tokens.TokenVerifier(secret_key=operator), trusted_key, internal=trusted_key)
    assert trusted.authenticate(Credentials("token", tokens.create_token(role, secret_key=internal).encode())) == role
    with pytest.raises(AuthenticationError, match=reserved):
        trusted.authenticate(Credentials("token", tokens.create_token(role, secret_key=operator).encode()))


def _tokens(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli(["tokens", *argv])
    return code, out.getvalue().strip(), err.getvalue().strip()


def test_tokens_cli(tmp_path):
    secret = tmp_path / "secret.key"
    assert _tokens("create-secret-key", "--output", str(secret))[0] == 0
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    code, token, _ = _tokens("create", "--secret-key", str(secret), "--subject", "app1", "--expiry-time", "1h")
    assert code == 0 and token.count(".") == 2
    assert _tokens("validate", token, "--secret-key", str(secret)) == (0, "valid, role app1", "")
    code, shown, _ = _tokens("show", token)
    assert code == 0 and '"sub": "app1"' in shown
    other = tmp_path / "other.key"
    _tokens("create-secret-key", "--output", str(other), "--base64")
    assert _tokens("validate", token, "--secret-key", str(other)) == (1, "", "error: token signature does not match")
    private, public = tmp_path / "private.pem", tmp_path / "public.pem"
    assert _tokens("create-key-pair", "--algorithm", "ES256", "--output-private-key", str(private),
                   "--output-public-key", str(public))[0] == 0
    code, signed, _ = _tokens("create", "--private-key", str(private), "--subject", "svc")
    assert _tokens("validate", signed, "--public-key", str(public)) == (0, "valid, role svc", "")
    assert _tokens("create", "--subject", "x") == (1, "", "error: give exactly one of --secret-key FILE or "
                                                         "--private-key FILE")
    assert _tokens("create", "--secret-key", "/nope", "--subject", "x")[2] == \
        "error: cannot read /nope: No such file or directory"
    assert _tokens("create", "--secret-key", str(secret), "--subject", "x", "--expiry-time", "soon")[2] == \
        "error: not a duration: 'soon' (examples: 30m, 12h, 7d, 1y)"
