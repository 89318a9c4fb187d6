from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Clients and identity"

    def ready(self) -> None:
        from tenants import signals

        signals.connect()
