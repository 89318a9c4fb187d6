from django.db import migrations

# The table of the `login_throttle` cache alias (Django's DatabaseCache, as `createcachetable`
# makes it): the login throttle's counts while Redis is down (tenants.throttle_store).


class Migration(migrations.Migration):

    dependencies = [
        ("tenants", "0003_client_mfa_required"),
    ]

    operations = [
        migrations.RunSQL(
            sql=[
                'CREATE TABLE "login_throttle_cache" ("cache_key" varchar(255) NOT NULL PRIMARY KEY,'
                ' "value" text NOT NULL, "expires" timestamp with time zone NOT NULL)',
                'CREATE INDEX "login_throttle_cache_expires" ON "login_throttle_cache" ("expires")',
            ],
            reverse_sql=['DROP TABLE "login_throttle_cache"'],
        ),
    ]
