"""What the desk's browser tests share: Debian's chromium for Playwright, a committed client that
daphne (another process) can see, logging in, screenshots, and waiting on the page.

Fixtures built on these are in desk/tests/conftest.py."""
from __future__ import annotations

import contextlib
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from django.conf import settings
from django_tenants.utils import tenant_context
from rest_framework_simplejwt.tokens import AccessToken

from agents.models import AgentConfig
from tradingplatform.testing import PASSWORD, ClientFixture, client_fixture_create

CHROMIUM = os.environ.get("DESK_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(settings.BASE_DIR) / ".artifacts" / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
# A roomy daily loss too: every buy here pays half the spread and a commission, and the modules buy often.
# The duplicate-order guard is off: these tests place like orders seconds apart.
ROOMY = {"max_net_delta": 200, "max_order_contracts": 20, "max_leg_contracts": 20, "max_orders_per_minute": 100,
         "max_daily_loss": 100_000, "duplicate_window_seconds": 0.0}
AXE = Path(settings.BASE_DIR) / "static" / "vendor" / "axe-core-4.14.1.min.js"


@contextlib.contextmanager
def committed_client(client_id: str, django_db_blocker, *, dropped: tuple[str, ...] = ()) -> Iterator[ClientFixture]:
    """A client (with an owner, a trader and a viewer) committed outside the test transactions,
    its agent in confirmation mode with ROOMY limits; dropped at the end with its users, and
    with the clients named in `dropped` that its tests made."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from tenants.models import Client

    with django_db_blocker.unblock():
        connection.set_schema_to_public()
        fixture = client_fixture_create(client_id)
        with tenant_context(fixture.client):
            AgentConfig.objects.update_or_create(singleton=True, defaults={
                "mode": "confirmation", "parameters": {"risk_limits": ROOMY}})
        # Closed here and after the teardown: Playwright's sync API runs the tests in another
        # context, whose connection is another one, and this one would stay open to the end of
        # the session (the test database could then not be dropped: "accessed by other users").
        connection.close()
    try:
        yield fixture
    finally:
        with django_db_blocker.unblock():
            connection.set_schema_to_public()
            for client in Client.objects.filter(client_id__in=[client_id, *dropped]):
                client.delete(force_drop=True)
            get_user_model().objects.filter(username__startswith=client_id).delete()
            connection.close()


def page_logged_in(browser, server, user, *, width=1280, height=900):
    """A fresh browser context at `width`, logged in as `user` through the login page."""
    context = browser.new_context(viewport={"width": width, "height": height}, base_url=server)
    page = context.new_page()
    page.goto("/login")
    page.fill("#username", user.get_username())
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("domcontentloaded")
    return page


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def api_call(server, method, path, user=None, body=None, headers=None):
    """(status, JSON body) of an API call to the test daphne, as `user` when given."""
    request = urllib.request.Request(server + path, method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"content-type": "application/json", **(headers or {})})
    if user is not None:
        request.add_header("Authorization", f"Bearer {AccessToken.for_user(user)}")
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def wait_live(page) -> None:
    # Selectors, not wait_for_function: the page's CSP (no eval) applies to Playwright's predicates too.
    page.wait_for_selector("#live-status[data-state=live]", timeout=10_000)


def wait_changed(locator, before: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = locator.inner_text()
        if text != before:
            return text
        time.sleep(0.05)
    raise AssertionError(f"unchanged after {timeout} s: {before[:200]}")


def wait_contains(locator, wanted: str, timeout: float = 5.0) -> str:
    """The region's text once it shows `wanted`: regions a live event moves follow it by a fetch."""
    deadline = time.monotonic() + timeout
    text = locator.inner_text()
    while wanted not in text:
        if time.monotonic() >= deadline:
            raise AssertionError(f"{wanted!r} not shown after {timeout} s: {text[-400:]}")
        time.sleep(0.05)
        text = locator.inner_text()
    return text
