"""The live stream's bounds over real HTTP (uvicorn in this process): a cap on clients, a
bounded queue per client, slow clients dropped while the others keep their samples; the
page's answer when its assets were never built."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest
from fastapi import FastAPI

from taureau.dashboard import assets
from taureau.dashboard.hub import HubFullError, LiveHub
from taureau.dashboard.install import mount
from taureau.web import WebServer

pytestmark = pytest.mark.anyio


class Counter:
    """A sampler: numbered samples, each `pad` bytes of filler larger than the last; it
    remembers which samples were asked for in detail."""

    def __init__(self, pad: int = 0) -> None:
        self.n = 0
        self.pad = pad
        self.detailed: list[int] = []

    def __call__(self, detail: bool) -> dict:
        self.n += 1
        if detail:
            self.detailed.append(self.n)
        return {"t": self.n, "totals": {"rateIn": float(self.n)}, "pad": "x" * self.pad}


async def _serve(hub: LiveHub, static=assets.STATIC) -> WebServer:
    app = FastAPI()
    mount(app, hub, static)
    web = WebServer(app, "127.0.0.1", 0)
    await web.start()
    hub.start()
    return web


async def _events(response: httpx.Response, count: int) -> list[tuple[str, object]]:
    """The first `count` events of a stream as (event name, decoded data)."""
    out: list[tuple[str, object]] = []
    kind = ""
    lines = response.aiter_lines()
    try:
        async for line in lines:
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                out.append((kind, json.loads(line[6:])))
                if len(out) == count:
                    break
    finally:  # closed here: an abandoned generator of httpx's stalls the loop's next request
        await lines.aclose()
    return out


async def _wait(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_history_first_then_samples_in_order():
    hub = LiveHub(Counter(), interval=0.05, history=3)
    web = await _serve(hub)
    try:
        await _wait(lambda: len(hub._history) == 3, what="three samples of history")
        async with httpx.AsyncClient() as http, http.stream("GET", f"http://127.0.0.1:{web.port}/admin/taureau/live") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = await _events(r, 4)
        kind, history = events[0]
        assert kind == "history"
        assert isinstance(history, list) and len(history) == 3  # bounded by `history`
        assert [h["t"] for h in history] == sorted(h["t"] for h in history)
        samples = [data for kind, data in events[1:] if kind == "sample"]
        assert len(samples) == 3
        ts = [s["t"] for s in samples]  # type: ignore[index]
        assert ts == sorted(ts) and ts[0] > history[-1]["t"]
    finally:
        await hub.stop()
        await web.stop()


async def test_samples_are_detailed_only_while_someone_listens():
    counter = Counter()
    hub = LiveHub(counter, interval=1.0)
    hub.tick()
    hub.tick()
    assert counter.detailed == []  # nobody listens: totals for the history only
    assert [h["t"] for h in hub._history] == [1, 2]
    subscriber = hub.subscribe()
    hub.tick()
    assert counter.detailed == [3]
    first, second = subscriber.queue.get_nowait(), subscriber.queue.get_nowait()
    assert first is not None and first.data == [{"t": 1, "rateIn": 1.0}, {"t": 2, "rateIn": 2.0}]
    assert second is not None and second.kind == "sample" and second.data["t"] == 3
    hub.unsubscribe(subscriber)
    hub.tick()
    assert counter.detailed == [3] and [h["t"] for h in hub._history] == [1, 2, 3, 4]


async def test_clients_over_the_cap_are_refused_until_one_leaves():
    # A sample a second and a queue of 8: these readers, which do not read, are not dropped.
    hub = LiveHub(Counter(), interval=1.0, max_clients=2)
    web = await _serve(hub)
    url = f"http://127.0.0.1:{web.port}/admin/taureau/live"
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            async with http.stream("GET", url) as first, http.stream("GET", url) as second:
                # (not read here: _events closes a stream when it is done with it)
                assert first.status_code == second.status_code == 200
                refused = await http.get(url)  # a 503 with a body, not a stream
                assert refused.status_code == 503
                assert "already has 2 clients" in refused.json()["reason"]
                assert refused.headers["retry-after"] == "5"
                assert hub.clients == 2
            # Both left: their slots are free again.
            await _wait(lambda: hub.clients == 0, what="the slots to be released")
            async with http.stream("GET", url) as third:
                assert third.status_code == 200
                assert (await _events(third, 2))[1][0] == "sample"
    finally:
        await hub.stop()
        await web.stop()


async def test_a_client_that_does_not_read_is_dropped_and_the_others_keep_streaming():
    # 256 KiB samples, 50 a second, a queue of 2: a reader that stops reading falls behind fast.
    # The hub drops it by its queue, not by a write's timeout: the write blocked when it was
    # dropped must still finish once the test reads (with 0.5 s, a busy CI machine was slower
    # to start reading, the write timed out and the connection closed without its last chunk).
    hub = LiveHub(Counter(pad=256 * 1024), interval=0.02, queue_size=2, send_timeout=10.0)
    web = await _serve(hub)
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        stalled.connect(("127.0.0.1", web.port))
        stalled.sendall(b"GET /admin/taureau/live HTTP/1.1\r\nHost: x\r\n\r\n")  # and never reads
        await _wait(lambda: hub.clients == 1, what="the stalled client to subscribe")
        await _wait(lambda: hub.dropped == 1, what="the stalled client to be dropped")
        assert hub.clients == 0
        # Its response ends (the chunked body's last chunk), after a bounded part of the samples.
        stalled.setblocking(False)
        loop = asyncio.get_running_loop()
        received, tail = 0, b""
        while not tail.endswith(b"\r\n0\r\n\r\n"):
            chunk = await asyncio.wait_for(loop.sock_recv(stalled, 1 << 20), 10)
            assert chunk, "the connection closed before the response ended"
            received += len(chunk)
            tail = (tail + chunk)[-16:]
        assert received < 32 * 1024 * 1024
        # Meanwhile the server keeps serving a reading client.
        async with httpx.AsyncClient() as http, http.stream("GET", f"http://127.0.0.1:{web.port}/admin/taureau/live") as r:
            events = await _events(r, 3)
            assert [kind for kind, _ in events] == ["history", "sample", "sample"]
    finally:
        stalled.close()
        await hub.stop()
        await web.stop()


async def test_a_failing_sampler_does_not_end_the_stream():
    calls = {"n": 0}

    def flaky(detail: bool) -> dict:
        calls["n"] += 1
        if calls["n"] % 2:
            raise RuntimeError("sampler bug")
        return {"t": calls["n"], "totals": {}}

    hub = LiveHub(flaky, interval=0.02)
    hub.start()
    try:
        subscriber = hub.subscribe()
        first = await subscriber.queue.get()
        assert first is not None and first.text.startswith("event: history")
        second = await asyncio.wait_for(subscriber.queue.get(), 5)
        assert second is not None and second.text.startswith("event: sample")
    finally:
        await hub.stop()


async def test_subscribe_over_the_cap_raises_hub_full():
    hub = LiveHub(Counter(), max_clients=1)
    hub.subscribe()
    with pytest.raises(HubFullError, match="already has 1 clients"):
        hub.subscribe()


async def test_the_page_says_how_to_build_when_assets_are_missing(tmp_path):
    (tmp_path / "index.html").write_text("<!doctype html>")  # hand-written files only
    hub = LiveHub(Counter())
    web = await _serve(hub, tmp_path)
    try:
        async with httpx.AsyncClient() as http:
            page = await http.get(f"http://127.0.0.1:{web.port}/")
            assert page.status_code == 503
            assert assets.BUILD_COMMAND in page.text
            assert "app.js, app.css" in page.text
            assert (await http.get(f"http://127.0.0.1:{web.port}/dashboard/app.js")).status_code == 404
            assert (await http.get(f"http://127.0.0.1:{web.port}/dashboard/../../install.py")).status_code == 404
    finally:
        await hub.stop()
        await web.stop()
