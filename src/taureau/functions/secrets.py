"""How `context.get_secret(name)` resolves, by the worker's `--secrets-provider`:

- `env` (Pulsar's EnvironmentBasedSecretsProvider): the environment variable of that name.
- `cleartext` (ClearTextSecretsProvider): the value written in the function's secrets map.
- `file`: a file under the function's own directory, `SECRETS_DIR/tenant/namespace/name/`;
  the secrets map names the file (`{"db-password": "db.txt"}`). A function cannot name a
  file outside its directory, so it does not read another function's secrets this way.

A secret's value is returned to the function and never logged; only its name may be.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("taureau.functions.secrets")

PROVIDERS = ("env", "cleartext", "file")
MAX_SECRET_BYTES = 64 * 1024


class SecretsProvider:
    def __init__(self, kind: str = "env", directory: str | None = None) -> None:
        if kind not in PROVIDERS:
            raise ValueError(f"unknown secrets provider {kind!r}; known: {', '.join(PROVIDERS)}")
        if kind == "file" and not directory:
            raise ValueError("the file secrets provider needs a directory (--secrets-dir)")
        self.kind = kind
        self.directory = directory  # the function's own directory, for `file`

    def provide_secret(self, secret_name: str, path_to_secret: Any) -> Any:
        if self.kind == "cleartext":
            return path_to_secret
        if self.kind == "file":
            return self._read(secret_name, path_to_secret)
        return os.environ.get(secret_name)

    def _read(self, secret_name: str, path_to_secret: Any) -> str | None:
        assert self.directory is not None
        relative = path_to_secret if isinstance(path_to_secret, str) and path_to_secret else secret_name
        base = os.path.realpath(self.directory)
        full = os.path.realpath(os.path.join(base, relative))
        if not full.startswith(base + os.sep):
            log.warning("secret %r names a file outside the function's secrets directory: refused", secret_name)
            return None
        try:
            with open(full, "rb") as f:
                data = f.read(MAX_SECRET_BYTES + 1)
        except OSError:
            return None  # as a missing environment variable
        if len(data) > MAX_SECRET_BYTES:
            log.warning("secret %r is over %d bytes: refused", secret_name, MAX_SECRET_BYTES)
            return None
        return data.decode("utf-8", errors="replace").removesuffix("\n")


def function_secrets_dir(root: str, tenant: str, namespace: str, name: str) -> str:
    return os.path.join(root, tenant, namespace, name)
