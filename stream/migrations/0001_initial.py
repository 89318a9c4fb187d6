from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="StreamCounter",
            fields=[
                ("client_id", models.CharField(max_length=40, primary_key=True, serialize=False)),
                ("seq", models.BigIntegerField()),
            ],
            options={"db_table": "stream_counter"},
        ),
        migrations.CreateModel(
            name="StreamEvent",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("client_id", models.CharField(max_length=40)),
                ("seq", models.BigIntegerField()),
                ("type", models.CharField(max_length=32)),
                ("ts", models.DateTimeField()),
                ("data", models.JSONField()),
                ("fanned_out", models.BooleanField(default=False)),
            ],
            options={
                "db_table": "stream_event",
                "indexes": [
                    models.Index(fields=["ts"], name="stream_event_ts"),
                    models.Index(condition=models.Q(("fanned_out", False)), fields=["id"], name="stream_event_pending"),
                ],
                "constraints": [models.UniqueConstraint(fields=("client_id", "seq"), name="stream_event_client_seq")],
            },
        ),
    ]
