"""The trader's desk: server-rendered pages over the same selectors and services as the API.

Thin views: every client page goes through `tenants.resolution.ClientScopedPageView` (the one
tenant-resolution path, session-authenticated), reads through selectors, writes through the
agents' and risk's services, and renders at once (inside the client's schema). Each page works
without JavaScript: forms post and redirect; `static/desk/desk.js` adds the live stream, dialogs
and countdowns on top.
"""
from __future__ import annotations

import math
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django_tenants.utils import tenant_context

from agents import services as agent_services
from agents.models import Proposal
from agents.parameters import ParameterError
from agents.selectors import (
    agent_band_history,
    agent_parameters_get,
    agent_status_get,
    book_scenario,
    proposal_effective_status,
    proposals_list,
)
from brokers.domain import BrokerError
from brokers.selectors import fills_newest_first
from brokers.services import broker_session
from desk import presenters
from risk.models import BookHistoryPoint
from risk.selectors import book_history_list, book_value_stored, trading_day_start_get
from risk.services import ExecutionHalted
from tenants import mfa
from tenants import services as tenant_services
from tenants.models import Membership
from tenants.resolution import ClientScopedPageView
from tenants.selectors import user_clients_list
from tradingplatform.network import client_ip

PROPOSAL_TABS = ("pending", "executed", "rejected", "expired", "failed", "all")


# ---------------------------------------------------------------------------------------------
# Session: log in, log out


class LoginView(View):
    """Members of any role log in here; the same throttle as the API's login. A user with
    two-factor authentication gets a second form for the code (the API's signed login token in a
    hidden field); the session then remembers the verified device (django-otp)."""

    def get(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated:
            return redirect(_next_url(request))
        return render(request, "desk/login.html", {"next": request.GET.get("next", "")})

    def post(self, request: HttpRequest) -> HttpResponse:
        if "mfa_token" in request.POST:
            return self._second_step(request)
        username = request.POST.get("username", "").strip()
        password = request.POST.get("password", "")
        context: dict[str, Any] = {"next": request.POST.get("next", ""), "username": username}
        if not username or not password:
            context["errors"] = {"username": [] if username else ["Enter your username."],
                                 "password": [] if password else ["Enter your password."]}
            return render(request, "desk/login.html", context, status=400)
        ip_address = client_ip(request)
        if wait := tenant_services.login_retry_after(username=username, ip_address=ip_address):
            context["error"] = f"Too many failed attempts. Try again in {wait // 60 + 1} minutes."
            response = render(request, "desk/login.html", context, status=429)
            response["Retry-After"] = str(wait)
            return response
        user = authenticate(request, username=username, password=password)
        if user is None:
            tenant_services.login_failure_record(username=username, ip_address=ip_address, channel="desk")
            context["error"] = "Invalid username or password."
            return render(request, "desk/login.html", context, status=401)
        if mfa.mfa_enabled(user=user):
            return render(request, "desk/login.html",
                          {"next": context["next"], "mfa_token": mfa.mfa_login_token_issue(user=user)})
        tenant_services.login_success_record(user=user, ip_address=ip_address, channel="desk")
        login(request, user)
        return redirect(_next_url(request))

    def _second_step(self, request: HttpRequest) -> HttpResponse:
        token = request.POST.get("mfa_token", "")
        code = request.POST.get("code", "").strip()
        context: dict[str, Any] = {"next": request.POST.get("next", ""), "mfa_token": token}
        try:
            user = mfa.mfa_login_token_user(token=token)
        except mfa.MfaLoginTokenInvalid as exc:
            return render(request, "desk/login.html", {"next": context["next"], "error": exc.message}, status=401)
        if not code:
            context["errors"] = {"code": ["Enter the code."]}
            return render(request, "desk/login.html", context, status=400)
        ip_address = client_ip(request)
        username = user.get_username()
        if wait := tenant_services.login_retry_after(username=username, ip_address=ip_address):
            context["error"] = f"Too many failed attempts. Try again in {wait // 60 + 1} minutes."
            response = render(request, "desk/login.html", context, status=429)
            response["Retry-After"] = str(wait)
            return response
        verification = mfa.mfa_code_verify(user=user, code=code)
        if verification is None:
            tenant_services.login_failure_record(username=username, ip_address=ip_address, channel="desk-2fa")
            context["errors"] = {"code": ["The code is not right (or was already used)."]}
            return render(request, "desk/login.html", context, status=401)
        tenant_services.login_success_record(user=user, ip_address=ip_address, channel="desk", second_factor=True)
        user.backend = "django.contrib.auth.backends.ModelBackend"
        user.otp_device = verification.device  # django-otp keeps it in the session at login
        login(request, user)
        return redirect(_next_url(request))


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                                  require_https=request.is_secure()):
        return target
    return reverse("desk-home")


class LogoutView(View):
    def post(self, request: HttpRequest) -> HttpResponse:
        logout(request)
        return redirect("desk-login")


# ---------------------------------------------------------------------------------------------
# My clients


class ClientsView(LoginRequiredMixin, View):
    login_url = "/login"

    def get(self, request: HttpRequest) -> HttpResponse:
        accesses = user_clients_list(user=request.user)
        if len(accesses) == 1:
            return redirect("desk-book", client_id=accesses[0].client.client_id)
        now = timezone.now()
        rows = []
        verified = mfa.session_used_second_factor(request.session, request.user)
        for access in accesses:
            if reason := mfa.mfa_missing_reason(user=request.user, verified=verified, client=access.client):
                rows.append({"client": access.client, "role": access.role, "mfa_required": reason})
                continue  # nothing of the client's book without the second factor its policy asks for
            with tenant_context(access.client):
                status = agent_status_get(client=access.client)
            rows.append(_client_row(access, status, now))
        return render(request, "desk/clients.html", {"rows": rows})


def _client_row(access, status: dict[str, Any], now: datetime) -> dict[str, Any]:
    usage = status["usage"]
    delta = presenters.Usage("Net delta", presenters.number(usage["net_delta"]),
                             presenters.number(usage["max_net_delta"]), "contracts")
    pnl = presenters.number(usage["daily_pnl"].get("total"))
    return {
        "client": access.client, "role": access.role, "status": status, "delta": delta,
        "pnl": pnl, "pnl_usage": presenters.Usage("Today's P&L", min(pnl, 0.0) if pnl is not None else None,
                                                  presenters.number(usage["max_daily_loss"]), "USD"),
        "last_cycle_age": presenters.age_seconds(status["last_cycle"], now),
    }


# ---------------------------------------------------------------------------------------------
# A client's book


class BookView(ClientScopedPageView):
    def get(self, request: HttpRequest, client_id: str) -> HttpResponse:
        return render(request, "desk/book.html", _book_context(request, self.client_access))


def _book_context(request: HttpRequest, access) -> dict[str, Any]:
    now = timezone.now()
    context = page_context(request, access, now, active="book")
    status = context["status"]
    limits = status["limits"]
    usage = status["usage"]
    context["usages"] = [
        presenters.Usage("Net delta", presenters.number(usage["net_delta"]), presenters.number(limits["max_net_delta"]),
                         "contracts"),
        presenters.Usage("Open legs", presenters.number(usage["open_legs"]), presenters.number(limits["max_open_legs"]),
                         "legs"),
        presenters.Usage("Today's loss", min(presenters.number(usage["daily_pnl"].get("total")) or 0.0, 0.0),
                         presenters.number(limits["max_daily_loss"]), "USD"),
        presenters.Usage("Orders in the last minute", presenters.number(usage["orders_last_minute"]),
                         presenters.number(limits["max_orders_per_minute"]), "orders"),
    ]
    context["history"] = _history(limits, now)
    try:
        with broker_session() as broker:
            # The book as last synced, valued at fresh quotes: a page view writes nothing (a sync
            # here would publish the very `greeks` event the open page refreshes on).
            valuation = book_value_stored(broker=broker)
            context["risk_graph"] = _risk_graph(request, valuation, broker, now)
    except BrokerError as exc:
        context["broker_error"] = exc.message
        return context
    context["legs"] = [_leg_row(leg, now) for leg in valuation.legs]
    context["net"] = valuation.net
    context["unrealized_pnl"] = valuation.unrealized_pnl
    # One source for one page: the bars read the same valuation as the greeks and the positions
    # (the live state behind `status` can be a sync behind them).
    usages = context["usages"]
    usages[0] = replace(usages[0], value=presenters.number(valuation.net_delta))
    usages[1] = replace(usages[1], value=float(len([leg for leg in valuation.legs if leg.quantity])))
    return context


HISTORY_MIN_HOURS = 1  # the chart shows the trading day so far, and at least this much
HISTORY_POINTS = 240  # about this many steps across it


def _history(limits: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The book's history since the trading day began: net delta of the agent's underlying with
    its band, the limit lines and the fills, and today's P&L under it; the same numbers as rows."""
    start = min(trading_day_start_get(now), now - timedelta(hours=HISTORY_MIN_HOURS))
    end = now + timedelta(seconds=1)
    step = max(math.ceil((end - start).total_seconds() / HISTORY_POINTS), 10)
    try:
        underlying = agent_parameters_get().underlying
    except ParameterError:
        underlying = None
    points = book_history_list(start=start, end=end, step_seconds=step)
    book = [p for p in points if p.underlying == BookHistoryPoint.BOOK]
    by_time = {p.at: p for p in points if p.underlying == underlying}
    if not by_time:  # nothing of the agent's underlying: the whole book's delta
        underlying, by_time = None, {p.at: p for p in book}
    bands = [presenters.BandSpan(at, target, half) for at, target, half in agent_band_history(start=start, end=now)]
    fills = [presenters.FillMark(fill.executed_at, fill.side, fill.quantity,
                                 f"{fill.executed_at:%H:%M:%S} {fill.side.lower()} {fill.quantity} "
                                 f"{fill.instrument_key} at {fill.price.normalize():f}")
             for fill in reversed(fills_newest_first().filter(executed_at__gte=start, executed_at__lte=end)[:200])]
    times = [p.at for p in book]
    deltas = [by_time[t].net_delta if t in by_time else None for t in times]
    pnls = [presenters.number(p.daily_pnl) for p in book]
    chart = presenters.history_chart(
        start=start, end=end, times=times, delta=deltas, pnl=pnls, bands=bands,
        max_net_delta=presenters.number(limits.get("max_net_delta")),
        max_daily_loss=presenters.number(limits.get("max_daily_loss")), fills=fills,
    )
    # The table's cells as text here: a day of points through template filters costs more than the page.
    rows, band_index = [], 0
    for moment, delta, point in zip(times, deltas, book, strict=True):
        while band_index + 1 < len(bands) and bands[band_index + 1].start <= moment:
            band_index += 1
        band = bands[band_index] if bands and bands[band_index].start <= moment else None
        rows.append({"at": f"{moment:%H:%M:%S}", "delta": _text(delta, "{:.2f}"),
                     "band": f"{band.target:.2f} ± {band.half_width:.2f}" if band else "—",
                     "daily_pnl": _text(point.daily_pnl, "{}"), "unrealized_pnl": _text(point.unrealized_pnl, "{}"),
                     "delta_value": delta, "daily_pnl_value": point.daily_pnl})
    return {"chart": chart, "rows": rows[::-1], "fills": fills[::-1], "start": start, "step": step,
            "underlying": underlying, "band": bands[-1] if bands else None, "latest": rows[-1] if rows else None}


def _text(value, pattern: str) -> str:
    return "—" if value is None else pattern.format(value)


def _leg_row(leg, now: datetime) -> dict[str, Any]:
    risk = leg.risk
    quote_age = presenters.age_seconds(risk.quote_time, now)
    return {
        "leg": leg, "instrument": risk.instrument, "quote_age": quote_age,
        "stale": quote_age is None or quote_age > 30,
        "dte": (risk.instrument.expiry - now.date()).days,
    }


def _risk_graph(request: HttpRequest, valuation, broker, now: datetime) -> dict[str, Any]:
    vol = request.GET.get("vol", "")
    days = request.GET.get("days", "")
    numbers = book_scenario(valuation=valuation, broker=broker, now=now,
                            vol_shift={"up": 0.05, "down": -0.05}.get(vol, 0.0), days=1.0 if days == "1" else 0.0,
                            proposal_id=request.GET.get("with") or None)
    series = [("Now", numbers["now"], "now"), ("At expiry", numbers["at_expiry"], "expiry")]
    if numbers["after_proposal"] is not None:
        series.append(("After the proposal", numbers["after_proposal"], "after"))
    rows = [{"shift": shift, "now": a, "expiry": b} for shift, a, b in
            zip(numbers["shifts"], numbers["now"], numbers["at_expiry"], strict=True)]
    if numbers["after_proposal"] is not None:
        for row, value in zip(rows, numbers["after_proposal"], strict=True):
            row["after"] = value
    return {"chart": presenters.line_chart(numbers["shifts"], series), "rows": rows, "series": series,
            "unpriced": numbers["unpriced"], "vol": vol, "days": days, "proposal": numbers["proposal"]}


# ---------------------------------------------------------------------------------------------
# Proposals


class ProposalsView(ClientScopedPageView):
    def get(self, request: HttpRequest, client_id: str) -> HttpResponse:
        return _proposals_page(request, self.client_access)


def _proposals_page(request: HttpRequest, access, *, errors: dict[str, Any] | None = None,
                    status_code: int = 200) -> HttpResponse:
    now = timezone.now()
    tab = request.GET.get("status", "pending")
    if tab not in PROPOSAL_TABS:
        tab = "pending"
    context = page_context(request, access, now, active="proposals")
    proposals = list(proposals_list(status=None if tab == "all" else tab)[:50])
    # A refusal is shown on the card the trader acted on, whatever tab it now belongs to.
    acted_on = [pk for pk in (_uuid(key) for key in (errors or {})) if pk is not None]
    shown = {proposal.pk for proposal in proposals}
    proposals[:0] = [proposal for proposal in Proposal.objects.filter(pk__in=acted_on) if proposal.pk not in shown]
    context.update(tab=tab, tabs=PROPOSAL_TABS, errors=errors or {},
                   cards=[proposal_card(proposal, now) for proposal in proposals])
    return render(request, "desk/proposals.html", context, status=status_code)


def proposal_card(proposal: Proposal, now: datetime) -> dict[str, Any]:
    """A proposal as its card shows it (desk/_proposal_card.html), on the proposals page and in chat."""
    precheck = proposal.precheck or {}
    return {
        "proposal": proposal, "status": proposal_effective_status(proposal, now),
        "seconds_left": max(int((proposal.expires_at - now).total_seconds()), 0),
        "violations": precheck.get("violations", []), "accepted": precheck.get("accepted"),
        "delta_before": precheck.get("pre_net_delta"), "delta_after": precheck.get("post_net_delta"),
        "rationale": {key: value for key, value in (proposal.rationale or {}).items()
                      if isinstance(value, (int, float, str)) and not isinstance(value, bool)},
    }


class ProposalApproveView(ClientScopedPageView):
    required_role = Membership.Role.TRADER

    def post(self, request: HttpRequest, client_id: str, proposal_id: str) -> HttpResponse:
        try:
            proposal = agent_services.proposal_approve(client=self.client_access.client, proposal_id=proposal_id,
                                                       user=request.user.get_username())
        except agent_services.ProposalNotFound:
            return _refused(request, self.client_access, proposal_id, 404, "No such proposal.")
        except agent_services.ProposalExpired as exc:
            return _refused(request, self.client_access, proposal_id, 410, str(exc))
        except agent_services.ProposalConflict as exc:
            return _refused(request, self.client_access, proposal_id, 409, str(exc))
        except ExecutionHalted as exc:
            return _refused(request, self.client_access, proposal_id, 423, f"Trading is halted: {exc.reason}")
        except agent_services.RiskRejected as exc:
            code = 423 if exc.is_halt else 422
            return _refused(request, self.client_access, proposal_id, code, str(exc), violations=exc.violations)
        except BrokerError as exc:
            return _refused(request, self.client_access, proposal_id, 503,
                            f"The broker could not be reached ({exc.message}); nothing was sent. Try again.")
        messages.success(request, f"Approved: {proposal.summary} Now {proposal.status}.")
        if back := _return_to(request):
            return redirect(back)
        return redirect(f"{reverse('desk-proposals', args=[client_id])}?status={proposal.status}")


class ProposalRejectView(ClientScopedPageView):
    required_role = Membership.Role.TRADER

    def post(self, request: HttpRequest, client_id: str, proposal_id: str) -> HttpResponse:
        reason = request.POST.get("reason", "").strip()
        if not reason:
            return _refused(request, self.client_access, proposal_id, 400, "Say why you reject it.", field="reason")
        try:
            agent_services.proposal_reject(client=self.client_access.client, proposal_id=proposal_id,
                                           user=request.user.get_username(), reason=reason[:500])
        except agent_services.ProposalNotFound:
            return _refused(request, self.client_access, proposal_id, 404, "No such proposal.")
        except (agent_services.ProposalExpired, agent_services.ProposalConflict) as exc:
            return _refused(request, self.client_access, proposal_id, 409, str(exc))
        messages.success(request, "Rejected.")
        return redirect(f"{reverse('desk-proposals', args=[client_id])}?status=pending")


def _return_to(request: HttpRequest) -> str:
    """A page of this site to go back to after acting on a card shown there (the chat), or ''."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return ""


def _refused(request: HttpRequest, access, proposal_id: str, status_code: int, message: str, *,
             violations: list | None = None, field: str | None = None) -> HttpResponse:
    """The proposals page again, the refusal shown on the card the trader acted on."""
    error = {"status": status_code, "message": message, "violations": violations or [], "field": field}
    return _proposals_page(request, access, errors={proposal_id: error}, status_code=status_code)


# ---------------------------------------------------------------------------------------------
# Fragments the live stream swaps in


class FragmentView(ClientScopedPageView):
    templates = {"banner": "desk/_banner.html", "badge": "desk/_badge.html"}

    def get(self, request: HttpRequest, client_id: str, name: str) -> HttpResponse:
        template = self.templates.get(name)
        if template is None:
            return render(request, "desk/not_found.html", status=404)
        context = page_context(request, self.client_access, timezone.now(), active="")
        return render(request, template, context)


def page_context(request: HttpRequest, access, now: datetime, *, active: str) -> dict[str, Any]:
    """What every client page shows around its own content: the client, the state banner, the
    pending badge, the next cycle, and what the user may do. The desk's other pages build on it."""
    status = agent_status_get(client=access.client)
    effective = status["effective_state"]
    return {
        "access": access, "client": access.client, "status": status, "effective": effective, "now": now,
        "active": active, "can_trade": access.allows(Membership.Role.TRADER),
        "halted": effective["halted"],
        "next_cycle_seconds": (max(int((status["next_cycle"] - now).total_seconds()), 0)
                               if status["next_cycle"] else None),
    }


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        return None
