from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0002_proposals_cycles_memory'),
    ]

    operations = [
        migrations.AlterField(
            model_name='proposal',
            name='source',
            field=models.CharField(choices=[('cycle', 'Cycle'), ('chat', 'Chat'), ('api', 'Api')], max_length=8),
        ),
    ]
