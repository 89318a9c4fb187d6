"""Access withdrawn everywhere at once: however a user's password changes (their own request, an
operator in the console, a management command) or the user is deactivated, every refresh token
of theirs is revoked in the same transaction. Access tokens carry a digest of the password hash
(SIMPLE_JWT CHECK_REVOKE_TOKEN), so they stop working at once too; open websockets notice within
WS_REAUTH_SECONDS (agents.consumers)."""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db.models.signals import post_save, pre_save

from tradingplatform.logging import user_var


def _before_save(sender, instance, **kwargs) -> None:
    instance._access_withdrawn = None
    if instance.pk is None:
        return
    previous = sender.objects.filter(pk=instance.pk).values("password", "is_active").first()
    if previous is None:
        return
    if previous["password"] != instance.password:
        instance._access_withdrawn = "password_changed"
    elif previous["is_active"] and not instance.is_active:
        instance._access_withdrawn = "deactivated"


def _after_save(sender, instance, created, **kwargs) -> None:
    from audit import kinds
    from audit.services import audit_record
    from tenants.services import user_tokens_revoke

    reason = getattr(instance, "_access_withdrawn", None)
    if not reason:
        return
    instance._access_withdrawn = None
    actor = user_var.get() or "platform"
    if reason == "password_changed":
        audit_record(client_id="", actor_type="user" if actor == instance.get_username() else "operator",
                     actor_id=actor, kind=kinds.AUTH_PASSWORD_CHANGED, payload={"user": instance.get_username()})
    user_tokens_revoke(user=instance, reason=reason, actor=actor)


def connect() -> None:
    user_model = get_user_model()
    pre_save.connect(_before_save, sender=user_model, dispatch_uid="tenants.access_withdrawn.pre")
    post_save.connect(_after_save, sender=user_model, dispatch_uid="tenants.access_withdrawn.post")
