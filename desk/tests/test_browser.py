"""The desk in a real browser: Playwright driving Debian's chromium (headless) against a real
daphne, the test PostgreSQL and Redis. What a trader does on a trading day, and what must hold
at phone width, from the keyboard alone, and for assistive technology (axe-core, vendored).

daphne sees only committed rows, so this module makes its own client (`desk`) outside the test
transactions. Screenshots of every page, at 1280 px and at 390 px, go to `.artifacts/screenshots/`
(git-ignored) for a person to look at.
"""
from __future__ import annotations

import itertools
import time

import pytest
from django_tenants.utils import tenant_context

from agents import services as agent_services
from agents.models import AgentConfig, Proposal
from agents.tests.books import buy_futures
from desk.tests.browsing import (
    AXE,
    ROOMY,
    api_call,
    committed_client,
    page_logged_in,
    shot,
    wait_changed,
    wait_contains,
    wait_live,
)
from risk import services as risk
from tradingplatform.testing import PASSWORD, client_fixture_create

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is a test dependency: make install")


@pytest.fixture(scope="module")
def desk_client(django_db_setup, django_db_blocker):
    """A committed client with a book the agent wants to hedge (and, at the end, dropped)."""
    with committed_client("desk", django_db_blocker, dropped=("desk-two",)) as fixture:
        with django_db_blocker.unblock():
            buy_futures(fixture, 6, client_order_id="desk-seed")
        yield fixture


# Distinct sizes: the duplicate-order guard refuses the same order twice in 30 s (3 and 6 are the seeds).
_DRIFTS = itertools.cycle([4, 5, 7, 8, 9, 10, 11, 12, 13, 14])


def _pending_hedge(fixture, key: str) -> Proposal:
    """The book drifts (a few futures bought) and the agent proposes to hedge it."""
    buy_futures(fixture, next(_DRIFTS), client_order_id=f"drift-{key}")
    with tenant_context(fixture.client):
        outcome = agent_services.cycle_run(client=fixture.client, key=key, trigger="manual")
        pending = Proposal.objects.filter(status=Proposal.Status.PENDING).order_by("-created_at").first()
    assert pending is not None, outcome.decision.reason if outcome.decision else outcome.skipped
    return pending


def test_a_trader_logs_in_sees_the_book_and_it_moves_without_a_reload(browser, server, desk_client, committed):
    page = page_logged_in(browser, server, desk_client.trader)
    assert page.url.endswith("/desk/desk/")  # one client: straight to its book
    assert page.locator("h1").inner_text() == "Desk Capital: book"
    assert page.locator("#state-banner").inner_text().startswith("● Active")
    wait_live(page)
    before = page.locator("#book-live").inner_text()
    buy_futures(desk_client, 3, client_order_id=f"desk-move-{time.monotonic_ns()}")
    with tenant_context(desk_client.client):
        from brokers.services import broker_session

        with broker_session() as broker:
            risk.book_sync(client=desk_client.client, broker=broker)  # publishes the new greeks
    wait_changed(page.locator("#book-live"), before)  # the greeks event's numbers, written at once
    wait_contains(page.locator("#positions"), "+9")  # the positions follow with the page's own rendering
    shot(page, "book-1280")
    page.context.close()


def test_the_day_s_chart_moves_without_a_reload_after_a_trade_and_the_page_does_not_refresh_itself(
        browser, server, desk_client, committed):
    from risk.models import BookHistoryPoint

    page = page_logged_in(browser, server, desk_client.trader)
    wait_live(page)
    history = page.locator("#book-history")
    fills_before = history.locator("path.fill-mark").count()
    table_before = history.inner_text()
    # An open page with nothing happening causes no sync of its own (no point, no event to refresh on).
    with tenant_context(desk_client.client):
        points = BookHistoryPoint.objects.count()
    time.sleep(1.5)
    with tenant_context(desk_client.client):
        assert BookHistoryPoint.objects.count() == points
    page.locator("#book-history details summary").click()  # the numbers, open: they stay open
    table_before = history.inner_text()
    buy_futures(desk_client, 2, client_order_id=f"desk-chart-{time.monotonic_ns()}")  # syncs, and publishes
    wait_changed(history, table_before)
    deadline = time.monotonic() + 5
    while history.locator("path.fill-mark").count() <= fills_before:
        assert time.monotonic() < deadline, page.locator("#history-summary").inner_text()
        time.sleep(0.05)
    assert page.locator("#book-history details").get_attribute("open") is not None
    assert page.evaluate("document.activeElement.tagName") == "SUMMARY"  # and keep the focus
    assert " buy 2 " in page.locator("#book-history details").inner_text()
    shot(page, "book-chart-1280")
    page.context.close()


def test_an_operator_halt_reaches_the_open_page_within_two_seconds_and_disables_approval(
        browser, server, desk_client, committed):
    proposal = _pending_hedge(desk_client, "halt-check")
    page = page_logged_in(browser, server, desk_client.trader)
    page.goto("/desk/desk/proposals")
    wait_live(page)
    assert page.locator(f"#proposal-{proposal.pk} button.approve-open").is_enabled()
    started = time.monotonic()
    with tenant_context(desk_client.client):
        risk.client_halt_set(client=desk_client.client, halted=True, reason="compliance check",
                             actor=risk.Actor("operator", "ops-anna"))
    try:
        page.wait_for_selector("#state-banner[data-halted=true]", timeout=2_000)
        assert time.monotonic() - started < 2.0
        assert "compliance check" in page.locator("#state-banner").inner_text()
        assert "ops-anna" in page.locator("#state-banner").inner_text()
        page.wait_for_selector(f"#proposal-{proposal.pk} .halted-note", timeout=2_000)
        button = page.locator(f"#proposal-{proposal.pk} .actions button", has_text="Approve")
        assert button.is_disabled()
        assert "compliance check" in page.locator(f"#proposal-{proposal.pk} .halted-note").inner_text()
        shot(page, "proposals-halted-1280")
    finally:
        with tenant_context(desk_client.client):
            risk.client_halt_set(client=desk_client.client, halted=False, reason="", actor=risk.Actor("operator", "o"))
        page.context.close()


def test_approve_from_the_keyboard_in_the_dialog_then_the_card_is_executed_with_its_fill(
        browser, server, desk_client, committed):
    proposal = _pending_hedge(desk_client, f"approve-{time.monotonic_ns()}")
    page = page_logged_in(browser, server, desk_client.trader)
    page.goto("/desk/desk/proposals")
    opener = page.locator(f"#proposal-{proposal.pk} .actions button.approve-open")
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog[open]")
    dialog.wait_for()
    assert "Desk Capital (desk)" in dialog.inner_text() and "Net delta after" in dialog.inner_text()
    assert page.evaluate("document.activeElement.closest('dialog') !== null")  # focus is in the dialog
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.closest('dialog') !== null")  # and stays there
    shot(page, "approve-dialog-1280")
    page.keyboard.press("Escape")
    assert page.locator("dialog[open]").count() == 0
    opener.focus()
    page.keyboard.press("Enter")
    page.keyboard.press("Enter")  # Confirm approval has the focus
    page.wait_for_url("**status=executed**")
    card = page.locator(f"#proposal-{proposal.pk}")
    assert "executed" in card.inner_text() and "Order filled" in card.inner_text()
    page.context.close()


def test_a_second_approve_shows_409_where_the_trader_clicked_and_a_refusal_lists_every_violation(
        browser, server, desk_client, committed):
    proposal = _pending_hedge(desk_client, f"race-{time.monotonic_ns()}")
    # Without JavaScript (the page must work before its script loads), so no live update moves
    # the card away before the click: the confirmation is a disclosure and a plain form.
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server, java_script_enabled=False)
    page = context.new_page()
    page.goto("/login")
    page.fill("#username", desk_client.trader.get_username())
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.goto("/desk/desk/proposals")
    # Someone else approves it through the API while the page is open.
    status, _ = api_call(server, "POST", f"/clients/desk/agent/approve/{proposal.pk}", desk_client.trader)
    assert status == 200
    page.locator(f"#proposal-{proposal.pk} details.approve summary").click()
    page.locator(f"#proposal-{proposal.pk} details.approve button[type=submit]").click()
    page.wait_for_selector(f"#refusal-{proposal.pk}")
    assert "(409)" in page.locator(f"#refusal-{proposal.pk}").inner_text()
    context.close()
    page = page_logged_in(browser, server, desk_client.trader)

    # Now one the governor refuses at approval: the limits shrink after it was proposed.
    proposal = _pending_hedge(desk_client, f"refuse-{time.monotonic_ns()}")
    with tenant_context(desk_client.client):
        config = AgentConfig.objects.get()
        config.parameters = {**config.parameters, "risk_limits": {"max_net_delta": 200, "max_order_contracts": 1,
                                                                  "max_leg_contracts": 1, "max_spread_pct": 0.00001,
                                                                  "max_orders_per_minute": 100}}
        config.save()
    try:
        page.goto("/desk/desk/proposals")
        page.locator(f"#proposal-{proposal.pk} .actions button.approve-open").click()
        page.locator("dialog[open] button[type=submit]").click()
        refusal = page.locator(f"#refusal-{proposal.pk}")
        refusal.wait_for()
        text = refusal.inner_text()
        assert "(422)" in text and refusal.locator("li").count() >= 2, text
        shot(page, "refusal-422-1280")
    finally:
        with tenant_context(desk_client.client):
            config.parameters = {**config.parameters, "risk_limits": ROOMY}
            config.save()
        page.context.close()


def test_a_member_of_another_client_gets_404_on_every_page_and_on_its_websocket(browser, server, desk_client, beta):
    # (Its `beta` fixture also tells pytest-django this module needs the test database.)
    page = page_logged_in(browser, server, beta.trader)
    for path in ("/desk/desk/", "/desk/desk/proposals", "/desk/desk/fragments/banner"):
        assert page.goto(path).status == 404, path
    code = page.evaluate("""() => new Promise(resolve => {
        const socket = new WebSocket(`ws://${location.host}/clients/desk/stream`);
        socket.onclose = event => resolve(event.code);
    })""")
    assert code == 4404
    page.context.close()


@pytest.mark.parametrize("path", ["/desk/desk/", "/desk/desk/proposals", "/desk/desk/proposals?status=all",
                                  "/desk/desk/chat", "/desk/desk/parameters"])
def test_at_phone_width_no_page_scrolls_sideways_and_axe_finds_nothing_serious(browser, server, desk_client, path,
                                                                               committed):
    _pending_hedge(desk_client, f"phone-{time.monotonic_ns()}")
    page = page_logged_in(browser, server, desk_client.trader, width=390, height=844)
    page.goto(path)
    page.wait_for_load_state("load")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), path
    name = path.strip("/").replace("/", "-").replace("?", "-").replace("=", "-")
    shot(page, f"{name}-390")
    page.set_viewport_size({"width": 360, "height": 740})  # the narrowest phones a trader carries
    page.wait_for_timeout(100)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), f"{path} at 360 px"
    page.add_script_tag(url=f"/static/vendor/{AXE.name}")  # same origin: the page's CSP allows it
    result = page.evaluate("() => axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21aa', 'wcag22aa']})")
    serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
               if v["impact"] in ("serious", "critical")]
    assert serious == [], serious
    page.context.close()


def test_the_login_page_and_my_clients_at_both_widths(browser, server, desk_client, committed):
    from tenants.models import Membership
    from tenants.services import membership_set

    other = client_fixture_create("desk-two")
    membership_set(client=other.client, user=desk_client.trader, role=Membership.Role.VIEWER)
    for width in (1280, 390):
        context = browser.new_context(viewport={"width": width, "height": 800}, base_url=server)
        page = context.new_page()
        page.goto("/login")
        shot(page, f"login-{width}")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        context.close()
        page = page_logged_in(browser, server, desk_client.trader, width=width)
        assert page.locator("h1").inner_text() == "My clients"
        assert page.locator("tbody tr").count() == 2
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot(page, f"clients-{width}")
        page.context.close()


def test_chat_streams_its_reply_and_an_inline_proposal_is_approved_there(browser, server, desk_client, committed):
    buy_futures(desk_client, 15, client_order_id=f"chat-drift-{time.monotonic_ns()}")
    page = page_logged_in(browser, server, desk_client.trader)
    page.goto("/desk/desk/chat")
    wait_live(page)
    page.fill("#chat-message", "hedge to neutral")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # Send, from the keyboard
    page.wait_for_selector("#chat-log .bubble-user", timeout=5_000)
    try:
        page.wait_for_selector("#chat-log .bubble-agent:not(.streaming) .card.proposal .approve-open", timeout=10_000)
    except playwright_api.TimeoutError:
        raise AssertionError(page.locator("#chat-log").inner_text()[-1500:]) from None
    assert "hedge" in page.locator("#chat-log .bubble-agent").last.inner_text().lower()
    shot(page, "chat-1280")
    page.locator("#chat-log .approve-open").last.click()
    page.locator("dialog[open] button[type=submit]").click()
    page.wait_for_url("**/desk/desk/chat")
    assert "Approved" in page.locator(".messages").inner_text()
    page.reload()  # the conversation is kept
    assert page.locator("#chat-log .bubble-user").count() >= 1
    page.context.close()


def test_an_owners_invalid_parameter_shows_by_its_field_and_nothing_changes(browser, server, desk_client, committed):
    page = page_logged_in(browser, server, desk_client.owner)
    page.goto("/desk/desk/parameters")
    page.fill("#f-band-width", "-1")
    page.click("text=Review changes")
    error = page.locator("#f-band-width-error")
    error.wait_for()
    assert page.locator("#f-band-width").get_attribute("aria-invalid") == "true"
    shot(page, "parameters-error-1280")
    with tenant_context(desk_client.client):
        assert "band" not in AgentConfig.objects.get().parameters
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto("/desk/desk/parameters")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "parameters-390")
    page.context.close()
