"""The desk's parameters page: the agent's parameters and risk limits in force, with defaults,
bounds and units (the same description the API gives); owners change them through the same
validation as the API, confirm a before/after diff, and see every error by its field. Also the
mode switch, the circuit breaker's reset and the broker connection's test."""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from agents import services as agent_services
from agents.parameters import ParameterError
from agents.selectors import agent_parameters_described
from agents.serializers import AgentParametersSerializer
from brokers.services import broker_connection_test
from desk.views import page_context
from risk import services as risk
from tenants.models import Membership
from tenants.resolution import ClientScopedPageView
from tradingplatform.serialization import json_ready


class ParametersPageView(ClientScopedPageView):
    def get(self, request: HttpRequest, client_id: str) -> HttpResponse:
        return _page(request, self.client_access)


class ParametersChangeView(ClientScopedPageView):
    required_role = Membership.Role.OWNER

    def post(self, request: HttpRequest, client_id: str) -> HttpResponse:
        described = agent_parameters_described()
        fields = {field["path"]: field for field in described["parameters"] + described["risk_limits"]}
        changes, errors = _changes(request.POST, fields)
        if not errors and not changes:
            errors["__all__"] = ["Nothing changed."]
        serializer = AgentParametersSerializer(data=_nested(changes))
        if changes and not serializer.is_valid():  # every error at once: the API's and the form's
            errors = {**_flatten(serializer.errors), **errors}
        if errors:
            return _page(request, self.client_access, errors=errors, submitted=request.POST, status=400)
        if request.POST.get("confirm") != "yes":
            diff = [{"path": path, "before": fields[path]["value"], "after": value} for path, value in changes.items()]
            return _page(request, self.client_access, diff=diff, submitted=request.POST)
        try:
            agent_services.agent_parameters_update(client=self.client_access.client,
                                                   changes=json_ready(serializer.validated_data),
                                                   actor=request.user.get_username())
        except ParameterError as exc:
            return _page(request, self.client_access, errors=exc.field_errors, submitted=request.POST, status=400)
        messages.success(request, f"Saved: {', '.join(changes)}.")
        return redirect("desk-parameters", client_id=client_id)


class ModeView(ClientScopedPageView):
    required_role = Membership.Role.OWNER

    def post(self, request: HttpRequest, client_id: str) -> HttpResponse:
        mode = request.POST.get("mode", "")
        if mode not in ("confirmation", "autonomous"):
            return _page(request, self.client_access, errors={"mode": ["Choose confirmation or autonomous."]},
                         status=400)
        try:
            agent_services.agent_mode_set(client=self.client_access.client, mode=mode,
                                          actor=request.user.get_username())
        except agent_services.AutonomousDisabled as exc:
            return _page(request, self.client_access, errors={"mode": [str(exc)]}, status=403)
        messages.success(request, f"Mode is now {mode}.")
        return redirect("desk-parameters", client_id=client_id)


class BreakerResetView(ClientScopedPageView):
    required_role = Membership.Role.OWNER

    def post(self, request: HttpRequest, client_id: str) -> HttpResponse:
        note = request.POST.get("note", "").strip()
        if not note:
            return _page(request, self.client_access, errors={"note": ["Say why the breaker may be reset."]},
                         status=400)
        try:
            risk.circuit_breaker_reset(client=self.client_access.client,
                                       actor=risk.Actor("user", request.user.get_username()), note=note[:500])
        except risk.BreakerNotTripped as exc:
            return _page(request, self.client_access, errors={"note": [str(exc)]}, status=409)
        messages.success(request, "The circuit breaker is reset.")
        return redirect("desk-parameters", client_id=client_id)


class BrokerTestView(ClientScopedPageView):
    required_role = Membership.Role.TRADER

    def post(self, request: HttpRequest, client_id: str) -> HttpResponse:
        health, error = broker_connection_test(client=self.client_access.client)
        if error is not None:
            messages.error(request, f"The broker did not answer: {error.message}")
        else:
            messages.success(request, f"The broker answered: {health.detail or 'connected'}.")
        return redirect("desk-parameters", client_id=client_id)


def _page(request: HttpRequest, access, *, errors: dict | None = None, diff: list | None = None,
          submitted: Any = None, status: int = 200) -> HttpResponse:
    context = page_context(request, access, timezone.now(), active="parameters")
    described = agent_parameters_described()
    errors = errors or {}
    groups = []
    for title, fields in (("Strategy", described["parameters"]), ("Risk limits", described["risk_limits"])):
        rows = []
        for field in fields:
            shown = submitted.get(field["path"]) if submitted is not None and field["path"] in submitted else None
            rows.append({**field, "id": "f-" + field["path"].replace(".", "-").replace("_", "-"),
                         "shown": shown if shown is not None else _text(field["value"]),
                         "errors": errors.get(field["path"], [])})
        groups.append({"title": title, "rows": rows})
    context.update(groups=groups, errors=errors, diff=diff, can_edit=access.allows(Membership.Role.OWNER),
                   general_errors=errors.get("__all__", []) + errors.get("non_field_errors", []))
    return render(request, "desk/parameters.html", context, status=status)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _changes(posted, fields: dict[str, dict]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The values the owner changed, typed as the API takes them (form fields are text)."""
    changes, errors = {}, {}
    for path, field in fields.items():
        if path not in posted:
            continue
        raw = posted.get(path, "").strip()
        if raw == _text(field["value"]):
            continue
        if raw == "":
            if field.get("nullable"):
                changes[path] = None
            else:
                errors[path] = ["Required."]
            continue
        if field["type"] == "integer":
            try:
                changes[path] = int(raw)
            except ValueError:
                errors[path] = ["Must be a whole number."]
        elif field["type"] == "number":
            try:
                changes[path] = float(raw)
            except ValueError:
                errors[path] = ["Must be a number."]
        else:  # choice, date, money: as text, the serializer parses them
            changes[path] = raw
    return changes, errors


def _nested(changes: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for path, value in changes.items():
        head, _, tail = path.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[head] = value
    return nested


def _flatten(errors: Any, prefix: str = "") -> dict[str, list[str]]:
    flat: dict[str, list[str]] = {}
    if isinstance(errors, dict):
        for key, value in errors.items():
            name = f"{prefix}{key}" if key != "non_field_errors" else (prefix.rstrip(".") or "__all__")
            flat.update(_flatten(value, f"{name}.") if isinstance(value, dict) else {name: [str(v) for v in value]})
    return flat
