"""Python access to sketches over the admin REST API.

>>> from taureau.sketches.client import SketchesClient
>>> c = SketchesClient("http://localhost:8080")
>>> c.create("clicks-by-user", "count-min", ["clicks"], key_field="user", window_ms=60_000,
...          params={"relative_error": 0.001, "confidence": 0.99}, parallelism=4)
>>> c.query("clicks-by-user", key="alice")      # {"estimate": ..., "lower": ..., "upper": ...}
>>> c.sketch("clicks-by-user")                  # the merged CountMin itself
"""

from __future__ import annotations

import builtins
from typing import Any

import httpx

from taureau.sketches import registry
from taureau.sketches.base import Sketch
from taureau.sketches.errors import SketchError
from taureau.sketches.spec import SketchSpec

BASE = "/admin/v3/sketches"


class SketchesClientError(SketchError):
    """The admin API refused a request (its reason), or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the HTTP status of a refusal; None if the API was not reached


class SketchesClient:
    def __init__(self, admin_url: str = "http://localhost:8080", timeout: float = 30.0) -> None:
        self.http = httpx.Client(base_url=admin_url.rstrip("/"), timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise SketchesClientError(f"cannot reach the admin API at {self.http.base_url}: {exc}") from None
        if response.status_code >= 400:
            try:
                reason = response.json().get("reason") or response.json().get("detail")
            except ValueError:
                reason = response.text
            raise SketchesClientError(f"{response.status_code}: {reason}", response.status_code)
        return response

    def create(self, name: str, kind: str, inputs: list[str], *, tenant: str = "public",
               namespace: str = "default", **fields: Any) -> SketchSpec:
        """Create a sketch function; the spec is checked here first (SketchParamError)."""
        spec = SketchSpec(name=name, kind=kind, inputs=list(inputs), tenant=tenant, namespace=namespace, **fields)
        spec.validate()
        self._call("POST", f"{BASE}/{spec.fqfn}", json=spec.to_dict())
        return spec

    def list(self, tenant: str = "public", namespace: str = "default") -> builtins.list[dict[str, Any]]:
        return self._call("GET", f"{BASE}/{tenant}/{namespace}").json()

    def get(self, name: str, tenant: str = "public", namespace: str = "default") -> dict[str, Any]:
        return self._call("GET", f"{BASE}/{tenant}/{namespace}/{name}").json()

    def delete(self, name: str, tenant: str = "public", namespace: str = "default") -> None:
        self._call("DELETE", f"{BASE}/{tenant}/{namespace}/{name}")

    def query(self, name: str, *, tenant: str = "public", namespace: str = "default", key: str | None = None,
              top: int | None = None, quantiles: builtins.list[float] | None = None,
              ranks: builtins.list[float] | None = None,
              distinct: bool = False, contains: str | None = None, sample: int | None = None,
              windows: int | None = None, window: int | None = None) -> dict[str, Any]:
        """Answer from the newest merged window (or the merge of the newest `windows`, or the
        window ending at `window` ms)."""
        params: dict[str, Any] = {"key": key, "top": top, "contains": contains, "sample": sample,
                                  "windows": windows, "window": window}
        if quantiles:
            params["quantiles"] = ",".join(str(q) for q in quantiles)
        if ranks:
            params["ranks"] = ",".join(str(r) for r in ranks)
        if distinct:
            params["distinct"] = "true"
        params = {k: v for k, v in params.items() if v is not None}
        return self._call("GET", f"{BASE}/{tenant}/{namespace}/{name}/query", params=params).json()

    def sketch(self, name: str, *, tenant: str = "public", namespace: str = "default",
               windows: int | None = None, window: int | None = None) -> Sketch:
        """The merged sketch itself, read from DataSketches' bytes."""
        params = {k: v for k, v in {"windows": windows, "window": window}.items() if v is not None}
        response = self._call("GET", f"{BASE}/{tenant}/{namespace}/{name}/sketch", params=params)
        return registry.kind(response.headers["X-Sketch-Kind"]).from_bytes(response.content)
