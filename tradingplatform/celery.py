import os

from tenant_schemas_celery.app import CeleryApp

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tradingplatform.settings")

# tenant-schemas-celery's app carries the schema a task was sent from, and runs it there.
app = CeleryApp("tradingplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
