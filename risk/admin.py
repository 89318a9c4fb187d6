"""Operator console: the halt page (platform-wide and per client), with a reason for every change."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django_tenants.utils import tenant_context

from risk import selectors, services
from tenants.models import Client, PlatformControl


class HaltForm(forms.Form):
    scope = forms.ChoiceField(choices=[("platform", "platform"), ("client", "client")])
    client_id = forms.CharField(required=False)
    halted = forms.ChoiceField(choices=[("true", "halt"), ("false", "lift")])
    reason = forms.CharField(max_length=500, strip=True)


@admin.register(PlatformControl)
class HaltConsole(admin.ModelAdmin):
    """Shown as "Platform controls"; its list page is the halt console."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_staff

    def changelist_view(self, request, extra_context=None):
        if request.method == "POST":
            return self._apply(request)
        control = selectors.platform_control_get()
        clients = []
        for client in Client.objects.order_by("client_id"):
            with tenant_context(client):
                record = selectors.risk_state_get()
            clients.append({"client": client, "state": record})
        context = {
            **self.admin_site.each_context(request),
            "title": "Halts",
            "control": control,
            "clients": clients,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/risk/halts.html", context)

    def _apply(self, request):
        form = HaltForm(request.POST)
        target = reverse("admin:tenants_platformcontrol_changelist")
        if not form.is_valid():
            messages.error(request, "A reason is required to halt or lift.")
            return HttpResponseRedirect(target)
        data = form.cleaned_data
        halted = data["halted"] == "true"
        actor = services.Actor("operator", request.user.get_username())
        if data["scope"] == "platform":
            services.emergency_halt_set(halted=halted, reason=data["reason"], actor=actor)
            messages.success(request, f"Emergency halt {'set' if halted else 'lifted'} for every client.")
        else:
            client = Client.objects.filter(client_id=data["client_id"]).first()
            if client is None:
                messages.error(request, "No such client.")
                return HttpResponseRedirect(target)
            with tenant_context(client):
                services.client_halt_set(client=client, halted=halted, reason=data["reason"], actor=actor)
            messages.success(request, f"Client {client.client_id} {'halted' if halted else 'resumed'}.")
        return HttpResponseRedirect(target)
