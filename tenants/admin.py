"""Operator console: clients (created through the onboarding service), memberships, users."""
from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from tenants.mfa import mfa_enabled, mfa_reset
from tenants.models import Client, Domain, Membership
from tenants.services import (
    OnboardingError,
    client_id_validate,
    client_onboard,
    membership_remove,
    membership_set,
    owner_validate,
)

# A device's secret never shows in the console, and a reset goes through tenants.mfa (audited,
# every token revoked): django-otp's own pages come down, a user action takes their place, and
# our EncryptedTOTPDevice has no page at all. (django-otp's TOTPDevice table is empty since
# tenants migration 0006; its page would show a seed in plaintext.)
for _model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


@admin.action(description="Reset two-factor authentication (a lost device: check who asks first)")
def mfa_reset_action(modeladmin, request, queryset) -> None:
    for user in queryset:
        mfa_reset(user=user, actor=request.user.get_username(), reason="reset in the operator console")
    modeladmin.message_user(request, f"Two-factor authentication reset for {queryset.count()} user(s); "
                            "their tokens are revoked.", messages.SUCCESS)


class OperatorUserAdmin(UserAdmin):
    actions = [mfa_reset_action]
    list_display = [*UserAdmin.list_display, "two_factor"]

    @admin.display(boolean=True, description="2FA")
    def two_factor(self, user) -> bool:
        return mfa_enabled(user=user)


if admin.site.is_registered(get_user_model()):
    admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), OperatorUserAdmin)


class ClientOnboardingForm(forms.ModelForm):
    """The add form: the same fields and checks as POST /clients/onboard."""

    owner_username = forms.CharField(max_length=150)
    owner_email = forms.EmailField()
    owner_password = forms.CharField(widget=forms.PasswordInput, strip=False)

    class Meta:
        model = Client
        fields = ["client_id", "name"]

    def clean_client_id(self) -> str:
        client_id = self.cleaned_data["client_id"]
        if errors := client_id_validate(client_id=client_id):
            raise forms.ValidationError(errors)
        return client_id

    def clean(self) -> dict:
        cleaned = super().clean()
        if {"owner_username", "owner_password", "owner_email"} <= cleaned.keys():
            errors = owner_validate(
                username=cleaned["owner_username"], password=cleaned["owner_password"], email=cleaned["owner_email"]
            )
            for field, messages in errors.items():
                self.add_error(f"owner_{field}", messages)
        return cleaned


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class DomainInline(admin.TabularInline):
    model = Domain
    extra = 0


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    list_display = ["client_id", "name", "status", "schema_name", "created_at"]
    list_filter = ["status"]
    search_fields = ["client_id", "name"]
    readonly_fields = ["client_id", "schema_name", "created_at"]
    inlines = [MembershipInline, DomainInline]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ClientOnboardingForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else []

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        try:
            client = client_onboard(
                client_id=data["client_id"],
                name=data["name"],
                owner_username=data["owner_username"],
                owner_password=data["owner_password"],
                owner_email=data["owner_email"],
                actor=request.user.get_username(),
            )
        except OnboardingError as exc:  # lost a race after the form was validated
            raise forms.ValidationError(str(exc.errors)) from exc
        obj.pk = client.pk
        obj.schema_name = client.schema_name

    def has_delete_permission(self, request, obj=None) -> bool:
        # Deleting a client would orphan its schema and its audit trail; suspend it instead.
        return False

    def save_formset(self, request, form, formset, change) -> None:
        if formset.model is not Membership:
            super().save_formset(request, form, formset, change)
            return
        _memberships_save(request, formset)


def _memberships_save(request, formset) -> None:
    """Team changes made in the console go through the services, so each is in the client's audit
    trail with the operator who made it."""
    actor = request.user.get_username()
    for inline_form in formset.forms:
        if not inline_form.has_changed() and not formset._should_delete_form(inline_form):
            continue
        instance = inline_form.instance
        if formset._should_delete_form(inline_form):
            if instance.pk is not None:
                membership_remove(membership=instance, actor=actor)
            continue
        data = inline_form.cleaned_data
        membership_set(client=formset.instance, user=data["user"], role=data["role"], actor=actor)


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "client", "role", "created_at"]
    list_filter = ["role", "client"]
    search_fields = ["user__username", "client__client_id"]
    autocomplete_fields = ["user", "client"]

    def save_model(self, request, obj, form, change) -> None:
        if change and {"client", "user"} & set(form.changed_data):
            # Moving a membership to another client or user is a removal and an addition.
            previous = Membership.objects.get(pk=obj.pk)
            membership_remove(membership=previous, actor=request.user.get_username())
            obj.pk = None
        saved = membership_set(client=obj.client, user=obj.user, role=obj.role, actor=request.user.get_username())
        obj.pk = saved.pk

    def delete_model(self, request, obj) -> None:
        membership_remove(membership=obj, actor=request.user.get_username())

    def delete_queryset(self, request, queryset) -> None:
        for membership in queryset.select_related("client", "user"):
            membership_remove(membership=membership, actor=request.user.get_username())
