"""Liveness and readiness. Readiness names the failing check so an operator knows where to look."""
from __future__ import annotations

import redis
from django.conf import settings
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import JsonResponse
from django_tenants.utils import get_tenant_base_schema, schema_context, schema_exists
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.decorators import api_view, authentication_classes, permission_classes


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _check_redis() -> str:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    finally:
        client.close()
    return "ok"


def _unapplied_migrations(schema_name: str) -> list[str]:
    with schema_context(schema_name):
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


def _check_migrations() -> str:
    template = get_tenant_base_schema()
    pending = {"public": _unapplied_migrations("public")}
    if not schema_exists(template):
        raise RuntimeError(f"the client template schema {template!r} does not exist")
    pending[template] = _unapplied_migrations(template)
    missing = {schema: names for schema, names in pending.items() if names}
    if missing:
        raise RuntimeError(f"unapplied migrations: {missing}")
    return "ok"


_CHECKS = {"database": _check_database, "redis": _check_redis, "migrations": _check_migrations}

_ReadinessSerializer = inline_serializer(
    "Readiness",
    {
        "status": serializers.ChoiceField(choices=["ok", "unavailable"]),
        "checks": serializers.DictField(child=serializers.CharField()),
        "failing": serializers.ListField(child=serializers.CharField()),
    },
)


@extend_schema(responses={200: inline_serializer("Liveness", {"status": serializers.CharField()})}, tags=["health"])
@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
def liveness(request):
    return JsonResponse({"status": "ok"})


@extend_schema(responses={200: _ReadinessSerializer, 503: _ReadinessSerializer}, tags=["health"])
@api_view(["GET"])
@authentication_classes([])
@permission_classes([])
def readiness(request):
    results: dict[str, str] = {}
    for name, check in _CHECKS.items():
        try:
            results[name] = check()
        except Exception as exc:  # a readiness probe reports every failure, whatever its type
            results[name] = f"failed: {type(exc).__name__}: {exc}"[:300]
    failing = [name for name, result in results.items() if result != "ok"]
    body = {"status": "unavailable" if failing else "ok", "checks": results, "failing": failing}
    return JsonResponse(body, status=503 if failing else 200)
