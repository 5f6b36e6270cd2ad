"""`taureau tokens`: keys and tokens as `pulsar tokens` makes them (for `--auth token`)."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
from typing import Any

from taureau.auth import tokens
from taureau.common.errors import AuthenticationError
from taureau.common.files import read_file


class TokenCommandError(Exception):
    pass


def _write_private(path: str, data: bytes) -> None:
    """Key files are secrets: created owner-only, never world-readable even for a moment."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise TokenCommandError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _read(path: str) -> bytes:
    return read_file(path, TokenCommandError)


def _secret_key(a: argparse.Namespace) -> str | None:
    key = tokens.create_secret_key()
    encoded = base64.b64encode(key)
    if a.output:
        _write_private(a.output, encoded + b"\n" if a.base64 else key)
        return None
    return encoded.decode()


def _key_pair(a: argparse.Namespace) -> None:
    private, public = tokens.create_key_pair(a.algorithm)
    _write_private(a.output_private_key, private)
    _write_private(a.output_public_key, public)


def _create(a: argparse.Namespace) -> str:
    if (a.secret_key is None) == (a.private_key is None):
        raise TokenCommandError("give exactly one of --secret-key FILE or --private-key FILE")
    expires = tokens.parse_duration(a.expiry_time) if a.expiry_time else None
    if a.secret_key is not None:
        return tokens.create_token(a.subject, secret_key=tokens.read_secret_key(_read(a.secret_key)),
                                   expires_in_s=expires)
    return tokens.create_token(a.subject, private_key=_read(a.private_key), expires_in_s=expires)


def _show(a: argparse.Namespace) -> str:
    return json.dumps(tokens.unverified_claims(a.token), indent=2)


def _validate(a: argparse.Namespace) -> str:
    if (a.secret_key is None) == (a.public_key is None):
        raise TokenCommandError("give exactly one of --secret-key FILE or --public-key FILE")
    if a.secret_key is not None:
        verifier = tokens.TokenVerifier(secret_key=tokens.read_secret_key(_read(a.secret_key)))
    else:
        verifier = tokens.TokenVerifier(public_key=_read(a.public_key))
    return f"valid, role {verifier.role(a.token)}"


def register(sub: Any) -> None:
    p = sub.add_parser("tokens", help="make secret keys, key pairs and tokens (pulsar tokens verbs)")
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    v = verbs.add_parser("create-secret-key", help="a random HS256 key")
    v.add_argument("-o", "--output", help="write it to this file (owner-only); default: print base64")
    v.add_argument("-b", "--base64", action="store_true", help="write the file as base64 text")
    v.set_defaults(func=_runner(_secret_key))
    v = verbs.add_parser("create-key-pair", help="an RS256 or ES256 key pair (PEM)")
    v.add_argument("-a", "--algorithm", choices=tokens.ASYMMETRIC, default="RS256")
    v.add_argument("--output-private-key", required=True)
    v.add_argument("--output-public-key", required=True)
    v.set_defaults(func=_runner(_key_pair))
    v = verbs.add_parser("create", help="a token whose role is --subject")
    v.add_argument("-s", "--subject", required=True, help="the role the token proves")
    v.add_argument("--secret-key", help="sign with this secret key file (HS256)")
    v.add_argument("--private-key", help="sign with this private key file (RS256/ES256)")
    v.add_argument("-e", "--expiry-time", help="e.g. 30m, 12h, 7d, 1y (default: never)")
    v.set_defaults(func=_runner(_create))
    v = verbs.add_parser("show", help="print a token's claims (not checked)")
    v.add_argument("token")
    v.set_defaults(func=_runner(_show))
    v = verbs.add_parser("validate", help="check a token's signature and expiry")
    v.add_argument("token")
    v.add_argument("--secret-key")
    v.add_argument("--public-key")
    v.set_defaults(func=_runner(_validate))


def _runner(fn):
    def run(args: argparse.Namespace) -> int:
        try:
            out = fn(args)
        except (TokenCommandError, AuthenticationError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if out:
            print(out)
        return 0

    return run
