"""The operator console's site and login: one throttle with the API (tenants.services.login_*), and
a second factor (django-otp's OTPAdminSite: only a verified login counts as staff) whenever the
user has one, and always while MFA_REQUIRED_FOR_STAFF (production)."""
from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django_otp.admin import OTPAdminSite

from tenants.mfa import mfa_code_verify, mfa_enabled
from tenants.services import login_failure_record, login_retry_after, login_success_record
from tradingplatform.network import client_ip


class OperatorLoginForm(AdminAuthenticationForm):
    """The console's login, under the same throttle as POST /auth/login: the same counters, the
    same delays, the same audit events (channel "console"); a wrong code counts as a failure."""

    otp_token = forms.CharField(
        required=False, max_length=64, label="Two-factor code",
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
        help_text="From your authenticator app, or a recovery code.")

    def clean(self) -> dict:
        username = self.cleaned_data.get("username") or ""
        ip_address = client_ip(self.request) if self.request is not None else ""
        if username and (wait := login_retry_after(username=username, ip_address=ip_address)):
            raise forms.ValidationError(
                f"Too many failed login attempts. Try again in {wait} seconds.", code="login_throttled")
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            if username and self.user_cache is None:  # a wrong password, not a non-staff user
                login_failure_record(username=username, ip_address=ip_address, channel="console")
            raise
        user = self.user_cache
        if user is None:
            return cleaned
        second_factor = False
        if mfa_enabled(user=user):
            code = cleaned.get("otp_token") or ""
            if not code:
                raise forms.ValidationError("Enter the code from your authenticator app.", code="token_required")
            verification = mfa_code_verify(user=user, code=code)
            if verification is None:
                login_failure_record(username=username, ip_address=ip_address, channel="console-2fa")
                raise forms.ValidationError("The two-factor code is not right (or was already used).",
                                            code="invalid_token")
            user.otp_device = verification.device  # kept in the session by django-otp at login
            second_factor = True
        elif settings.MFA_REQUIRED_FOR_STAFF:
            raise forms.ValidationError(
                "Operators need two-factor authentication: another operator enrols you with "
                "`python manage.py mfa_enrol <username>`.", code="mfa_not_enrolled")
        login_success_record(user=user, ip_address=ip_address, channel="console", second_factor=second_factor)
        return cleaned


class OperatorAdminSite(OTPAdminSite):
    """django-otp's OTPAdminSite (an unverified session is not staff) while MFA_REQUIRED_FOR_STAFF;
    Django's own rule otherwise. Installed as the default site (tenants.console_apps.OperatorAdminConfig),
    so every app's registrations land here."""

    login_form = OperatorLoginForm
    login_template = "admin/login_otp.html"

    def __init__(self, name: str = "admin") -> None:
        super().__init__(name)

    def has_permission(self, request) -> bool:
        if settings.MFA_REQUIRED_FOR_STAFF:
            return super().has_permission(request)
        return AdminSite.has_permission(self, request)
