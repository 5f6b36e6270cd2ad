"""The dashboard with authentication on, in a real browser: it asks for a token, refuses a
wrong one, shows a superuser everything, and a limited role only what it may see, with the
server's 403 reason where it tries more."""

from __future__ import annotations

import httpx
import pulsar
import pytest

from tests.e2e.browser import VIEWPORT
from tests.security.helpers import Keys, client, rest, start

ACME = "persistent://acme/orders/in"
PUBLIC = "persistent://public/default/elsewhere"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A standalone with token auth: tenant acme (admin role acme-admin), app1 allowed to
    produce on acme/orders, a message and a subscription on one topic of acme and one of
    public."""
    root = tmp_path_factory.mktemp("auth")
    (root / "keys").mkdir()
    keys = Keys(root / "keys")
    server = start(root, keys)
    with rest(server, keys.token("admin")) as admin:
        assert admin.put("/admin/v2/tenants/acme", json={"adminRoles": ["acme-admin"],
                                                           "allowedClusters": ["standalone"]}).status_code == 204
        assert admin.put("/admin/v2/namespaces/acme/orders").status_code == 204
        assert admin.post("/admin/v2/namespaces/acme/orders/permissions/app1", json=["produce"]).status_code == 204
    c = client(server, auth=pulsar.AuthenticationToken(keys.token("admin")))
    for topic in (ACME, PUBLIC):
        c.subscribe(topic, "audit").close()
        c.create_producer(topic).send(b'{"order": 1}')
    c.close()
    yield server, keys
    assert server.stop() == 0


@pytest.fixture
def open_page(browser, secured):
    contexts = []
    errors: list[str] = []

    def open_page():
        context = browser.new_context(viewport=VIEWPORT, base_url=secured[0].admin_url)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto("/")
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert errors == [], f"the page raised: {errors}"


def expect(locator):
    from playwright.sync_api import expect  # imported here: without Playwright the tests skip

    return expect(locator)


def _sign_in(page, token: str) -> None:
    page.get_by_test_id("token").fill(token)
    page.get_by_test_id("sign-in").click()


def test_the_page_asks_for_a_token_and_refuses_a_wrong_one(open_page, secured):
    server, keys = secured
    page = open_page()
    page.get_by_test_id("login").wait_for(timeout=10_000)
    assert page.get_by_test_id("login-reason").count() == 0  # nothing refused yet
    _sign_in(page, "not-a-token")
    expect(page.get_by_test_id("login-reason")).to_contain_text("refused the token", timeout=10_000)
    page.evaluate("document.querySelector('[data-testid=login-reason]').remove()")
    _sign_in(page, keys.token("someone", expires_in_s=-10))  # well signed, expired
    expect(page.get_by_test_id("login-reason")).to_contain_text("expired", timeout=10_000)
    # The token is never in a URL: the stream is read with fetch and a header.
    urls: list[str] = []
    page.on("request", lambda request: urls.append(request.url))
    _sign_in(page, keys.token("admin"))
    page.locator(f'tr[data-topic="{ACME}"]').wait_for(timeout=10_000)
    page.locator(f'tr[data-topic="{PUBLIC}"]').wait_for(timeout=10_000)
    assert page.get_by_test_id("role").inner_text().startswith("admin (superuser)")
    page.get_by_test_id("live").filter(has_text="live").wait_for(timeout=10_000)
    assert any(u.endswith("/admin/taureau/live") for u in urls)
    assert all("token" not in u.lower() and keys.token("admin")[:20] not in u for u in urls)
    # Signed out: asked again, and the stored token is gone.
    page.get_by_test_id("sign-out").click()
    page.get_by_test_id("login").wait_for(timeout=10_000)
    assert page.evaluate("sessionStorage.length") == 0


def test_a_tenant_admin_sees_its_tenant_only(open_page, secured):
    server, keys = secured
    page = open_page()
    _sign_in(page, keys.token("acme-admin"))
    page.locator(f'tr[data-topic="{ACME}"]').wait_for(timeout=10_000)
    page.get_by_test_id("live").filter(has_text="live").wait_for(timeout=10_000)
    assert page.locator('section[data-namespace^="public/"]').count() == 0
    assert page.locator(f'tr[data-topic="{PUBLIC}"]').count() == 0
    assert page.get_by_test_id("role").inner_text().startswith("acme-admin Sign out")
    # Its own topic: peek works.
    page.locator(f'tr[data-topic="{ACME}"] a').click()
    page.get_by_test_id("peek").click()
    page.locator("tr.message").first.wait_for(timeout=10_000)
    # Another tenant's topic, typed in: the server's reason, not an empty page.
    page.goto("/#/topic/public/default/elsewhere")
    expect(page.locator("p.error").first).to_contain_text("Not allowed for role acme-admin", timeout=10_000)
    page.goto("/#/state")
    assert "only superusers" in page.get_by_test_id("forbidden").inner_text(timeout=10_000)


def test_a_role_that_may_only_produce_gets_the_403_reason_for_a_skip(open_page, secured):
    server, keys = secured
    page = open_page()
    _sign_in(page, keys.token("app1"))
    page.locator(f'tr[data-topic="{ACME}"] a').click()  # found through its grant (whoami)
    page.locator('tr[data-subscription="audit"]').wait_for(timeout=10_000)
    page.get_by_test_id("skip-all").click()
    page.get_by_test_id("confirm-ok").click()
    status = page.get_by_test_id("action-status")
    expect(status).to_contain_text("Not allowed for role app1", timeout=10_000)
    assert "may not consume" in status.inner_text()
    with rest(server, keys.token("admin")) as admin:  # and nothing was skipped
        stats = admin.get("/admin/v2/persistent/acme/orders/in/stats").json()
    assert stats["subscriptions"]["audit"]["msgBacklog"] == 1
    httpx.get(server.admin_url + "/")  # the server still serves
