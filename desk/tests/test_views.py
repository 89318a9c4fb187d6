"""The desk's pages through Django's test client: sessions, the one tenant resolution, refusals
shown where the trader clicked, nothing changed by bad input."""
from __future__ import annotations

import re

import pytest
from django.test import Client as Browser
from django_tenants.utils import tenant_context

from agents import services as agent_services
from agents.models import Proposal
from agents.tests.books import buy_futures, configure
from risk import services as risk
from tradingplatform.testing import PASSWORD


def _logged_in(user) -> Browser:
    browser = Browser()
    assert browser.post("/login", {"username": user.get_username(), "password": PASSWORD}).status_code == 302
    return browser


def _pending_hedge(fixture) -> Proposal:
    configure(fixture)
    buy_futures(fixture, 4)
    with tenant_context(fixture.client):
        (proposal,) = agent_services.cycle_run(client=fixture.client, key="desk", trigger="manual").proposals
    return proposal


def test_anonymous_visitors_go_to_the_login_page(db):
    response = Browser().get("/desk/alpha/")
    assert response.status_code == 302 and response["Location"].startswith("/login?next=/desk/alpha/")


def test_a_bad_password_is_refused_and_a_missing_field_named(alpha):
    assert Browser().post("/login", {"username": "alpha-trader", "password": "nope"}).status_code == 401
    response = Browser().post("/login", {"username": "alpha-trader", "password": ""})
    assert response.status_code == 400 and b"Enter your password." in response.content


def test_the_login_is_throttled_like_the_api(alpha, settings):
    settings.LOGIN_FAILURE_LIMIT = 2
    browser = Browser()
    for _ in range(2):
        browser.post("/login", {"username": "alpha-viewer", "password": "wrong"})
    response = browser.post("/login", {"username": "alpha-viewer", "password": PASSWORD})
    assert response.status_code == 429 and response["Retry-After"]


def test_a_member_of_one_client_goes_straight_to_its_book_and_sees_it(alpha):
    browser = _logged_in(alpha.trader)
    home = browser.get("/")
    assert home.status_code == 302 and home["Location"] == "/desk/alpha/"
    buy_futures(alpha, 2)
    book = browser.get("/desk/alpha/")
    assert book.status_code == 200
    text = book.content.decode()
    assert "Alpha Capital" in text and "● Active" in text and "Risk graph" in text
    assert "ES FUT" in text
    assert "script-src 'self'" in book["Content-Security-Policy"]
    assert "<script>" not in text and " onclick=" not in text  # nothing inline: the CSP would block it


def test_a_non_member_sees_the_same_404_as_for_a_client_that_does_not_exist(alpha, beta):
    browser = _logged_in(beta.trader)
    for path in ("/desk/alpha/", "/desk/alpha/proposals", "/desk/nosuch/", "/desk/alpha/fragments/banner"):
        response = browser.get(path)
        assert response.status_code == 404, path
    def page(path):
        return re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"", browser.get(path).content)

    assert page("/desk/alpha/") == page("/desk/nosuch/")


def test_approve_from_the_page_executes_once_and_a_second_approve_says_409(alpha):
    proposal = _pending_hedge(alpha)
    browser = _logged_in(alpha.trader)
    page = browser.get("/desk/alpha/proposals").content.decode()
    assert "Confirm approval" in page and "Alpha Capital (alpha)" in page and "Risk pre-check" in page
    response = browser.post(f"/desk/alpha/proposals/{proposal.pk}/approve")
    assert response.status_code == 302 and "status=executed" in response["Location"]
    again = browser.post(f"/desk/alpha/proposals/{proposal.pk}/approve")
    assert again.status_code == 409 and f'id="refusal-{proposal.pk}"'.encode() in again.content


def test_a_viewer_cannot_approve(alpha):
    proposal = _pending_hedge(alpha)
    response = _logged_in(alpha.viewer).post(f"/desk/alpha/proposals/{proposal.pk}/approve")
    assert response.status_code == 403
    with tenant_context(alpha.client):
        assert Proposal.objects.get(pk=proposal.pk).status == Proposal.Status.PENDING


def test_while_halted_the_buttons_are_disabled_with_the_reason_and_approval_is_423(alpha):
    proposal = _pending_hedge(alpha)
    with tenant_context(alpha.client):
        risk.client_halt_set(client=alpha.client, halted=True, reason="desk review", actor=risk.Actor("user", "ops"))
    browser = _logged_in(alpha.trader)
    page = browser.get("/desk/alpha/proposals").content.decode()
    assert "Approval is disabled: desk review" in page and "disabled" in page
    assert "Client halted" in page and "set by ops" in page
    response = browser.post(f"/desk/alpha/proposals/{proposal.pk}/approve")
    assert response.status_code == 423 and b"desk review" in response.content


def test_a_reject_needs_a_reason_and_changes_nothing_without_one(alpha):
    proposal = _pending_hedge(alpha)
    browser = _logged_in(alpha.trader)
    response = browser.post(f"/desk/alpha/proposals/{proposal.pk}/reject", {"reason": "  "})
    assert response.status_code == 400
    with tenant_context(alpha.client):
        assert Proposal.objects.get(pk=proposal.pk).status == Proposal.Status.PENDING
    assert browser.post(f"/desk/alpha/proposals/{proposal.pk}/reject", {"reason": "too big"}).status_code == 302
    with tenant_context(alpha.client):
        assert Proposal.objects.get(pk=proposal.pk).status == Proposal.Status.REJECTED


def test_the_risk_graph_overlays_a_pending_proposal(alpha):
    proposal = _pending_hedge(alpha)
    text = _logged_in(alpha.trader).get(f"/desk/alpha/?with={proposal.pk}").content.decode()
    assert "After the proposal" in text


@pytest.mark.parametrize("path", ["/desk/alpha/?vol=up", "/desk/alpha/?vol=down&days=1", "/desk/alpha/?with=junk",
                                  "/desk/alpha/proposals?status=bogus", "/desk/alpha/fragments/nope"])
def test_odd_query_strings_never_fail(alpha, path):
    assert _logged_in(alpha.trader).get(path).status_code in (200, 404)


def test_chat_without_javascript_posts_and_shows_the_reply_and_the_drafted_proposal(alpha):
    configure(alpha)
    buy_futures(alpha, 3)
    browser = _logged_in(alpha.trader)
    response = browser.post("/desk/alpha/chat", {"message": "hedge to neutral"})
    assert response.status_code == 302
    page = browser.get("/desk/alpha/chat").content.decode()
    assert "hedge to neutral" in page and "Confirm approval" in page  # the draft, inline, approvable
    assert browser.post("/desk/alpha/chat", {"message": "   "}).status_code == 400
    assert _logged_in(alpha.viewer).post("/desk/alpha/chat", {"message": "hi"}).status_code == 403


def test_an_owners_invalid_parameter_is_shown_by_its_field_and_changes_nothing(alpha):
    from agents.selectors import agent_config_get

    browser = _logged_in(alpha.owner)
    response = browser.post("/desk/alpha/parameters/change", {"band.width": "-3", "structure.dte_min": "x"})
    assert response.status_code == 400
    text = response.content.decode()
    assert 'id="f-band-width-error"' in text and 'id="f-structure-dte-min-error"' in text
    with tenant_context(alpha.client):
        assert "band" not in agent_config_get().parameters


def test_an_owner_reviews_a_diff_then_saves_and_a_viewer_only_reads(alpha):
    from agents.selectors import agent_parameters_get

    browser = _logged_in(alpha.owner)
    review = browser.post("/desk/alpha/parameters/change", {"band.width": "2.5"})
    assert review.status_code == 200 and b"Confirm these changes" in review.content
    with tenant_context(alpha.client):
        assert agent_parameters_get().band.width == 1.0  # nothing saved before the confirmation
    saved = browser.post("/desk/alpha/parameters/change", {"band.width": "2.5", "confirm": "yes"})
    assert saved.status_code == 302
    with tenant_context(alpha.client):
        assert agent_parameters_get().band.width == 2.5
    viewer = _logged_in(alpha.viewer)
    assert b"Read only" in viewer.get("/desk/alpha/parameters").content
    assert viewer.post("/desk/alpha/parameters/change", {"band.width": "3"}).status_code == 403
    assert browser.post("/desk/alpha/mode", {"mode": "sideways"}).status_code == 400
    assert browser.post("/desk/alpha/breaker/reset", {"note": "ok"}).status_code == 409  # not tripped
    assert _logged_in(alpha.trader).post("/desk/alpha/broker/test").status_code == 302


def test_the_book_shows_the_day_s_delta_band_limits_fills_and_p_and_l_in_the_chart_and_in_words(alpha):
    from risk.models import BookHistoryPoint

    _pending_hedge(alpha)  # a fill, syncs (history points) and a decision with its band
    browser = _logged_in(alpha.trader)
    with tenant_context(alpha.client):
        points_before = BookHistoryPoint.objects.count()
    text = browser.get("/desk/alpha/").content.decode()
    history = text[text.index('<section id="book-history"'):text.index('<div id="book-positions">')]
    assert "Today: net delta (ES) and P&amp;L" in history
    assert 'class="line line-delta"' in history and 'class="line line-pnl"' in history
    assert 'class="band"' in history and "band 0.00 ± " in history  # the agent's band, drawn and said
    assert "limit ±50" in history  # ROOMY_LIMITS' max net delta
    assert "(sticky-moneyness delta)" in history  # the delta model the net delta is counted in
    assert 'class="fill-mark fill-buy"' in history and " buy 4 " in history  # the fill, drawn and listed
    assert re.search(r"<th scope=\"row\">\d\d:\d\d:\d\d</th><td class=\"num\">4\.00</td>", history), history[-3000:]
    assert "style=" not in history and "<script" not in history  # CSP 'self': classes only
    with tenant_context(alpha.client):  # rendering the page synced nothing (no event, no point)
        assert BookHistoryPoint.objects.count() == points_before


def test_a_viewer_s_book_page_without_any_history_says_so(alpha):
    text = _logged_in(alpha.viewer).get("/desk/alpha/").content.decode()
    assert "No history yet: a point is recorded at every book sync." in text


def test_the_book_shows_the_working_orders_delta_apart(alpha):
    from brokers.domain import OrderLeg, OrderRequest
    from brokers.services import broker_session

    configure(alpha)
    browser = _logged_in(alpha.trader)
    assert "Working orders" not in browser.get("/desk/alpha/").content.decode()
    with tenant_context(alpha.client):
        with broker_session() as broker:
            future = broker.lookup_instrument(symbol="ES", sec_type="FUT")
            bid = broker.quote(future).bid
        result = risk.order_submit(  # a buy well under the market: it rests
            client=alpha.client, actor=risk.Actor("user", "alpha-trader"), order=OrderRequest(
                client_order_id="desk-rest", legs=(OrderLeg(future, "BUY", 2),), order_type="LMT",
                limit_price=round((bid - 40.0) * 4) / 4, time_in_force="GTC"))
    assert result.accepted and result.status.state == "submitted"
    text = browser.get("/desk/alpha/").content.decode()
    assert "Working orders: 1, delta 2.00 contracts not yet filled" in text
