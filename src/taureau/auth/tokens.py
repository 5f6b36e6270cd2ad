"""JWT tokens as Pulsar uses them: the role is the `sub` claim, `exp` is honoured.

Keys: a secret key (HS256) is 32 random bytes; a key pair is RS256 (RSA 2048) or ES256
(P-256). Key files may be raw bytes or base64 (secret), PEM or DER (key pairs); Taureau
writes PEM for key pairs, and raw bytes (or base64 with `--base64`) for secrets, as
`pulsar tokens` does.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from taureau.common.errors import AuthenticationError

ASYMMETRIC = ("RS256", "ES256")
_DURATION = re.compile(r"(\d+)([smhdwy])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text: str) -> int:
    """`30s`, `10m`, `2h`, `7d`, `1w`, `1y` (or plain seconds) -> seconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (examples: 30m, 12h, 7d, 1y)")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def create_secret_key() -> bytes:
    return os.urandom(32)


def create_key_pair(algorithm: str = "RS256") -> tuple[bytes, bytes]:
    """(private key PEM, public key PEM)."""
    if algorithm == "RS256":
        private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = rsa.generate_private_key(65537, 2048)
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"key pairs are RS256 or ES256, not {algorithm!r}")
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
    public_pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    return private_pem, public_pem


def read_secret_key(data: bytes) -> bytes:
    """A secret key file: raw bytes, or base64 text (as `--base64` writes)."""
    stripped = data.strip()
    if stripped and len(stripped) >= 40:
        try:
            decoded = base64.b64decode(stripped, validate=True)
            if len(decoded) >= 16:
                return decoded
        except (binascii.Error, ValueError):
            pass
    if len(data) < 16:
        raise ValueError("a secret key has at least 16 bytes")
    return data


def _load_private(data: bytes):
    if data.lstrip().startswith(b"-----"):
        return serialization.load_pem_private_key(data, password=None)
    return serialization.load_der_private_key(data, password=None)


def load_public_key(data: bytes):
    if data.lstrip().startswith(b"-----"):
        return serialization.load_pem_public_key(data)
    return serialization.load_der_public_key(data)


def _algorithm_of(key) -> str:
    return "ES256" if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) else "RS256"


def create_token(subject: str, *, secret_key: bytes | None = None, private_key: bytes | None = None,
                 expires_in_s: int | None = None) -> str:
    """A signed token whose role is `subject`."""
    if not subject:
        raise ValueError("a token needs a subject (the role)")
    claims: dict[str, object] = {"sub": subject}
    if expires_in_s is not None:
        claims["exp"] = int(time.time()) + expires_in_s
    if (secret_key is None) == (private_key is None):
        raise ValueError("sign with exactly one of a secret key or a private key")
    if secret_key is not None:
        return jwt.encode(claims, secret_key, algorithm="HS256")
    key = _load_private(private_key or b"")
    return jwt.encode(claims, key, algorithm=_algorithm_of(key))


@dataclass(frozen=True, slots=True)
class TokenVerifier:
    """Checks a token's signature and expiry; its `sub` is the role."""

    secret_key: bytes | None = None
    public_key: bytes | None = None

    def role(self, token: str) -> str:
        return self.identity(token)[0]

    def identity(self, token: str) -> tuple[str, float | None]:
        """(role, expiry as a Unix time or None) of a token whose signature and expiry hold."""
        if self.secret_key is not None:
            key, algorithms = self.secret_key, ["HS256"]
        elif self.public_key is not None:
            public = load_public_key(self.public_key)
            key, algorithms = public, [_algorithm_of(public)]
        else:
            raise AuthenticationError("token authentication has no key configured")
        try:
            claims = jwt.decode(token, key, algorithms=algorithms, options={"require": ["sub"]})
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("token expired") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("token signature does not match") from None
        except jwt.InvalidTokenError as exc:
            raise AuthenticationError(f"invalid token: {exc}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError("token has no subject")
        expiry = claims.get("exp")
        return subject, float(expiry) if isinstance(expiry, int | float) else None


def unverified_claims(token: str) -> dict:
    """What a token says, without checking it (for `taureau tokens show`)."""
    try:
        return jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise ValueError(f"not a token: {exc}") from None
