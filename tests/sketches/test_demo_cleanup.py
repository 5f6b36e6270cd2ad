"""`taureau demo iot` deletes its sketches at the end and says which it could not delete.

A delete the admin API refused used to be swallowed: the demo exited 0 with a sketch still
deployed (seen once in CI). The API's answers are scripted here (httpx's MockTransport); the
end-to-end demo runs against a real standalone in tests/e2e/test_sketches.py."""

from __future__ import annotations

import httpx
import pytest

from taureau.cli import demo
from taureau.sketches.client import SketchesClient


def _client(status_of: dict[str, int]) -> tuple[SketchesClient, list[str]]:
    deleted: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        name = request.url.path.rsplit("/", 1)[-1]
        assert request.method == "DELETE"
        status = status_of.get(name, 204)
        if status == 204:
            deleted.append(name)
            return httpx.Response(204)
        return httpx.Response(status, json={"reason": f"scripted {status}"})

    c = SketchesClient("http://admin.invalid")
    c.http.close()  # replaced by one whose answers are scripted
    c.http = httpx.Client(base_url="http://admin.invalid", transport=httpx.MockTransport(answer))
    return c, deleted


def test_every_sketch_is_deleted_and_a_missing_one_is_not_an_error(capsys):
    c, deleted = _client({"iot-latency": 404})
    assert demo._delete_sketches(c) is True
    assert deleted == ["iot-device-counts", "iot-top-devices", "iot-distinct-devices"]
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("status", [500, 503])
def test_a_refused_delete_is_one_line_on_stderr_and_the_others_still_go(capsys, status):
    c, deleted = _client({"iot-device-counts": status})
    assert demo._delete_sketches(c) is False
    assert deleted == ["iot-top-devices", "iot-distinct-devices", "iot-latency"]
    err = capsys.readouterr().err
    assert err == f"error: could not delete sketch iot-device-counts: {status}: scripted {status}\n"
