"""Keys, tokens, htpasswd files and standalones with authentication on, for security tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import bcrypt
import httpx
import pulsar

from taureau.auth import tokens
from tests.e2e.harness import Standalone

LOGGER = pulsar.ConsoleLogger(pulsar.LoggerLevel.Error)
PASSWORDS = {"alice": "wonder", "bob": "builder"}


def write_private(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


class Keys:
    """A secret key and an htpasswd file under `root`, and tokens signed with the key."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.secret = tokens.create_secret_key()
        self.secret_file = write_private(root / "secret.key", self.secret)
        lines = [f"{u}:{bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode()}" for u, p in PASSWORDS.items()]
        self.htpasswd = write_private(root / "htpasswd", ("\n".join(lines) + "\n").encode())

    def token(self, role: str, expires_in_s: int | None = None) -> str:
        return tokens.create_token(role, secret_key=self.secret, expires_in_s=expires_in_s)

    def token_file(self, role: str) -> Path:
        return write_private(self.root / f"{role}.token", self.token(role).encode())


def start(root: Path, keys: Keys, *extra: str, state: bool = False) -> Standalone:
    data = root / "data"
    return Standalone(
        data, "--auth", "token,basic", "--token-secret-key", str(keys.secret_file),
        "--basic-auth-file", str(keys.htpasswd), "--superuser-roles", "admin,alice", "--no-functions", *extra,
        state=state,
    ).start()


def client(server: Standalone, auth=None, timeout: int = 10, **options) -> pulsar.Client:
    return pulsar.Client(server.service_url, authentication=auth, operation_timeout_seconds=timeout,
                         logger=LOGGER, **options)


def rest(server: Standalone, token: str | None = None, **options) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.admin_url, headers=headers, timeout=10, **options)


# A function that stores into its own ephemeral space, or the space of the function its input
# names, and says what happened.
STATE_PROBE = """
def process(input, context):
    try:
        context.ephemeral_state(of=input or None).hash_table("t").upsert(b"k", b"v")
        return "stored"
    except Exception as e:
        return type(e).__name__ + ": " + str(e)
"""


def acme_for_functions(server: Standalone, keys: Keys) -> None:
    """Tenant acme (admin role tadmin) with namespaces acme/fn and acme/other; role dev may
    deploy functions in acme/fn."""
    with rest(server, keys.token("admin")) as http:
        assert http.put("/admin/v2/tenants/acme", json={"adminRoles": ["tadmin"],
                                                        "allowedClusters": ["standalone"]}).status_code == 204
        for ns in ("acme/fn", "acme/other"):
            assert http.put(f"/admin/v2/namespaces/{ns}").status_code == 204
        assert http.post("/admin/v2/namespaces/acme/fn/permissions/dev", json=["functions"]).status_code == 204


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "taureau.cli.main", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def round_trip(c: pulsar.Client, topic: str) -> bytes:
    """Subscribe, send the topic's name, receive it back; closes the client."""
    try:
        consumer = c.subscribe(topic, "s")
        c.create_producer(topic).send(topic.encode())
        msg = consumer.receive(5000)
        consumer.acknowledge(msg)
        return msg.data()
    finally:
        c.close()
