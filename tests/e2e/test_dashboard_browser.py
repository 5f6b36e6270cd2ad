"""The dashboard in a real browser: a standalone with traffic and a function, the overview
showing the topic's live rate, a topic page peeking a message and skipping its backlog behind
a confirmation, the functions page stopping and starting a function, the sketches and state
pages. Screenshots are taken on every run; TAUREAU_DASHBOARD_SCREENSHOTS=1 writes them to
docs/img/ (the README shows them), otherwise they go to a temporary folder."""

from __future__ import annotations

import threading

import httpx
import pulsar
import pytest

from taureau.sketches.client import SketchesClient, SketchesClientError
from tests.e2e.browser import VIEWPORT
from tests.e2e.functions_helpers import EXAMPLES, create, wait_for, wait_running

# State on: sketch functions merge their windows through it.
STANDALONE = {"state": True, "args": ["--functions-runtime", "thread", "--functions-warm-pool", "0"]}
TOPIC = "persistent://public/default/dash-orders"


class Order(pulsar.schema.Record):
    order = pulsar.schema.Integer()
    item = pulsar.schema.String()


@pytest.fixture(scope="module")
def traffic(standalone):
    """A subscription, then a producer publishing ~50 AVRO records a second until the module ends."""
    client = pulsar.Client(standalone.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    consumer = client.subscribe(TOPIC, "audit")  # never reads: its backlog grows
    producer = client.create_producer(TOPIC, batching_enabled=False, schema=pulsar.schema.AvroSchema(Order))
    stop = threading.Event()

    def publish() -> None:
        n = 0
        while not stop.wait(0.02):
            producer.send(Order(order=n, item="widget"), partition_key=f"customer-{n % 7}")
            n += 1

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(5)
    consumer.close()
    client.close()


@pytest.fixture
def page(browser, standalone):
    context = browser.new_context(viewport=VIEWPORT, base_url=standalone.admin_url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert errors == [], f"the page raised: {errors}"


def test_the_browser_resolves_no_host_name(page, standalone):
    from playwright.sync_api import Error

    # Even `localhost`, which the system resolves without any network, and which would reach
    # the standalone: only the literal 127.0.0.1 is let through.
    with pytest.raises(Error, match="ERR_NAME_NOT_RESOLVED"):
        page.goto(f"http://localhost:{standalone.web_port}/")


def _number(text: str) -> float:
    value = text.split("/")[0].strip()
    scale = {"k": 1e3, "M": 1e6}.get(value[-1:], 1)
    return float(value.rstrip("kM")) * scale


def test_overview_shows_the_topic_with_a_live_rate(page, shots, traffic):
    page.goto("/")
    page.get_by_test_id("live").filter(has_text="live").wait_for(timeout=10_000)
    rate = page.locator(f'tr[data-topic="{TOPIC}"] td.rate-in')
    page.wait_for_function(
        """sel => { const el = document.querySelector(sel); return el && /^[0-9.]+k?\\/s$/.test(el.textContent)
                    && parseFloat(el.textContent) > 0; }""",
        arg=f'tr[data-topic="{TOPIC}"] td.rate-in', timeout=15_000,
    )
    assert _number(rate.inner_text()) > 0
    assert _number(page.get_by_test_id("total-rate-in").inner_text()) > 0
    assert int(page.locator(f'tr[data-topic="{TOPIC}"] td.subscriptions').inner_text()) == 1
    page.wait_for_timeout(2500)  # a few more points on the chart for the screenshot
    page.screenshot(path=str(shots / "dashboard-overview.png"), full_page=True)


def test_topic_page_peeks_and_skips_behind_a_confirmation(page, shots, traffic):
    page.goto("/")
    page.locator(f'tr[data-topic="{TOPIC}"] a').click()
    assert page.get_by_test_id("topic-name").inner_text() == TOPIC
    row = page.locator('tr[data-subscription="audit"]')
    row.wait_for(timeout=10_000)
    page.get_by_test_id("peek").click()
    first = page.locator("tr.message").first
    first.wait_for(timeout=10_000)
    assert '"item":"widget"' in first.locator("td.payload.decoded").inner_text()  # AVRO, decoded
    assert first.locator("td.schema").inner_text() == "AVRO v0"
    assert first.locator("td").nth(2).inner_text().startswith("customer-")
    assert page.locator("tr.message").count() == 10
    page.screenshot(path=str(shots / "dashboard-topic.png"), full_page=True)

    # Cancel changes nothing; confirm acknowledges the backlog.
    row.get_by_test_id("skip-all").click()
    page.get_by_test_id("confirm-dialog").get_by_text("Cancel").click()
    assert "done" not in page.get_by_test_id("action-status").inner_text()
    row.get_by_test_id("skip-all").click()
    page.get_by_test_id("confirm-ok").click()
    page.get_by_test_id("action-status").filter(has_text="skip all on audit: done").wait_for(timeout=10_000)
    backlog = httpx.get(f"{page.context.pages[0].url.split('/#')[0]}/admin/v2/persistent/public/default/"
                        "dash-orders/stats").json()["subscriptions"]["audit"]["msgBacklog"]
    assert backlog < 100  # emptied; the producer adds ~50 a second since


class Reading(pulsar.schema.Record):
    sensor = pulsar.schema.String()
    celsius = pulsar.schema.Double()


@pytest.mark.parametrize("codec,kind", [(pulsar.schema.JsonSchema, "JSON"), (pulsar.schema.AvroSchema, "AVRO")])
def test_topic_page_peek_decodes_payloads_by_their_schema(page, standalone, codec, kind):
    topic = f"persistent://public/default/dash-readings-{kind.lower()}"
    client = pulsar.Client(standalone.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        producer = client.create_producer(topic, schema=codec(Reading), batching_enabled=False)
        producer.send(Reading(sensor="boiler-7", celsius=81.5))
    finally:
        client.close()
    page.goto("/#/topic/" + topic.removeprefix("persistent://"))
    page.get_by_test_id("peek").click()
    message = page.locator("tr.message").first
    message.wait_for(timeout=10_000)
    assert message.locator("td.schema").inner_text() == f"{kind} v0"
    decoded = message.locator("td.payload.decoded")
    assert '"sensor":"boiler-7"' in decoded.inner_text() and '"celsius":81.5' in decoded.inner_text()
    if kind == "AVRO":  # binary: without the schema it would be shown as hex
        assert "hex:" not in decoded.inner_text()


def test_functions_page_shows_a_deployed_function_running_and_stops_and_starts_it(page, shots, standalone):
    create(standalone, "dash-exclaim", EXAMPLES / "exclamation_function.py",
           "exclamation_function.ExclamationFunction", "--inputs", "dash-in", "--output", "dash-out")
    wait_running(standalone, "dash-exclaim")
    client = pulsar.Client(standalone.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    producer = client.create_producer("persistent://public/default/dash-in")
    stop = threading.Event()

    def publish() -> None:
        n = 0
        while not stop.wait(0.02):
            producer.send(f"hello {n}".encode())
            n += 1

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        page.goto("/#/functions")
        card = page.locator('section[data-function="public/default/dash-exclaim"]')
        card.get_by_test_id("instance-state").filter(has_text="running").wait_for(timeout=15_000)
        card.get_by_test_id("running").filter(has_text="1 of 1 running").wait_for(timeout=10_000)
        page.wait_for_function(
            """sel => /processed [1-9]/.test(document.querySelector(sel)?.textContent ?? "")""",
            arg='section[data-function="public/default/dash-exclaim"] .summary', timeout=15_000,
        )
        page.wait_for_timeout(2500)  # a few points on the chart, the instance's counters read again
        page.screenshot(path=str(shots / "dashboard-functions.png"), full_page=True)

        card.get_by_test_id("stop").click()
        page.get_by_test_id("confirm-ok").click()
        card.locator(".status").filter(has_text="stop public/default/dash-exclaim: done").wait_for(timeout=10_000)
        card.get_by_test_id("running").filter(has_text="0 of").wait_for(timeout=10_000)
        card.get_by_test_id("start").click()  # starting needs no confirmation
        card.locator(".status").filter(has_text="start public/default/dash-exclaim: done").wait_for(timeout=10_000)
        card.get_by_test_id("running").filter(has_text="1 of 1 running").wait_for(timeout=15_000)
    finally:
        stop.set()
        thread.join(5)
        client.close()


def _merged(sketches: SketchesClient, name: str, **query) -> bool:
    try:
        return sketches.query(name, **query)["n"] > 0
    except SketchesClientError:  # no window merged yet
        return False


def test_sketches_page_shows_a_top_k_table_and_a_quantile_chart(page, shots, standalone):
    sketches = SketchesClient(standalone.admin_url)
    events = "persistent://public/default/dash-events"
    sketches.create("dash-users", "frequent-items", [events], key_field="user", window_ms=1000, grace_ms=200)
    sketches.create("dash-latency", "kll", [events], value_field="ms", window_ms=1000, grace_ms=200)
    wait_running(standalone, "dash-users")
    wait_running(standalone, "dash-latency")
    client = pulsar.Client(standalone.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    producer = client.create_producer(events)
    for i in range(300):  # alice 3 in 6, bob 2 in 6, carol 1 in 6
        user = ["alice", "alice", "alice", "bob", "bob", "carol"][i % 6]
        producer.send_async(f'{{"user": "{user}", "ms": {i % 100}}}'.encode(), None)
    producer.flush()
    client.close()
    wait_for(lambda: _merged(sketches, "dash-users", top=3) and _merged(sketches, "dash-latency", quantiles=[0.5]),
             timeout=20, what="both sketches to merge a window")
    page.goto("/#/sketches")
    users = page.locator('section[data-sketch="public/default/dash-users"]')
    users.locator("tr.top-item").first.wait_for(timeout=10_000)
    assert users.locator("tr.top-item td").first.inner_text() == "alice"
    latency = page.locator('section[data-sketch="public/default/dash-latency"]')
    latency.locator("canvas").first.wait_for(timeout=10_000)
    assert "p50" in latency.get_by_test_id("answer").inner_text()
    page.screenshot(path=str(shots / "dashboard-sketches.png"), full_page=True)


def test_state_page_maps_each_memory_servers_blocks(page, shots, standalone):
    page.goto("/#/state")
    server = page.locator("section[data-server]")
    server.first.wait_for(timeout=10_000)
    assert server.count() == 1  # standalone's own memory server
    used, total = (int(v.replace(",", "")) for v in page.get_by_test_id("blocks").inner_text().split(" / "))
    assert total == 64  # --state-blocks' default
    squares = server.first.locator(".block")
    assert squares.count() == 64
    assert server.first.locator(".block.used").count() == used
    assert int(page.get_by_test_id("structures").inner_text()) >= 0
    page.locator("td", has_text="splits").first.wait_for()
    page.screenshot(path=str(shots / "dashboard-state.png"), full_page=True)
