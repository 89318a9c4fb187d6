"""The desk's option chain: the hedge future's options by expiry (tabs), calls | strike | puts,
with bid/ask, implied volatility and greeks, and the legs the client holds marked in words."""
from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from agents.chain_api import ChainQuerySerializer, chain_read
from brokers.domain import BrokerError
from desk.views import page_context
from risk.chain import ExpiryNotListed
from tenants.resolution import ClientScopedPageView


class ChainView(ClientScopedPageView):
    def get(self, request: HttpRequest, client_id: str) -> HttpResponse:
        context = page_context(request, self.client_access, timezone.now(), active="chain")
        query = ChainQuerySerializer(data=request.GET)
        if not query.is_valid():
            context["errors"] = {name: [str(message) for message in messages]
                                 for name, messages in query.errors.items()}
            return render(request, "desk/chain.html", context, status=400)
        try:
            chain = chain_read(expiry=query.validated_data.get("expiry"))
        except ExpiryNotListed as exc:
            listed = ", ".join(day.isoformat() for day in exc.listed) or "none"
            context["errors"] = {"expiry": [f"Not a listed expiry. Listed: {listed}."]}
            return render(request, "desk/chain.html", context, status=400)
        except BrokerError as exc:
            context["broker_error"] = exc
            return render(request, "desk/chain.html", context, status=503)
        context.update(chain=chain, rows=[{"strike": row.strike, "atm": row.at_the_money,
                                           "call": _side(row.call), "put": _side(row.put)} for row in chain.rows])
        return render(request, "desk/chain.html", context)


def _side(side) -> dict | None:
    """One option's cells, formatted: IV in percent, greeks per contract unit ("—" when unknown)."""
    if side is None:
        return None
    risk = side.risk
    known = risk.greeks_source != "none"

    def fmt(value, digits):
        return "—" if value is None or not known else f"{value:.{digits}f}"

    return {"key": side.instrument.key, "held": side.held,
            "bid": "—" if side.bid is None else f"{side.bid:.2f}",
            "ask": "—" if side.ask is None else f"{side.ask:.2f}",
            "iv": "—" if not risk.implied_vol or risk.implied_vol <= 0 else f"{risk.implied_vol * 100:.1f} %",
            "delta": fmt(risk.delta, 3), "gamma": fmt(risk.gamma, 5), "vega": fmt(risk.vega, 2),
            "theta": fmt(risk.theta, 2), "source": risk.greeks_source}
