"""The operator console's app: django.contrib.admin with tenants.console's site (a second factor,
the shared login throttle). A module of its own: the admin's AppConfig must not sit in tenants.apps."""
from django.contrib.admin.apps import AdminConfig


class OperatorAdminConfig(AdminConfig):
    default_site = "tenants.console.OperatorAdminSite"
