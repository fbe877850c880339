"""Schedule `customers.tasks.compute_due_scores` every hour with django-celery-beat's
database scheduler: it starts each merchant's score computation on its cadence (every night,
or once a week on a chosen weekday) from 03:00 merchant-local time. Idempotent."""

from django.db import migrations
from django.utils import timezone

TASK_NAME = "Compute due customer scores"
TASK = "customers.tasks.compute_due_scores"


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_hour, _ = IntervalSchedule.objects.get_or_create(every=1, period="hours")
    PeriodicTask.objects.update_or_create(
        name=TASK_NAME,
        defaults={
            "task": TASK,
            "interval": every_hour,
            "crontab": None,
            "solar": None,
            "clocked": None,
            "enabled": True,
            "description": "Compute lifecycle stages, RFM scores and tiers on each cadence.",
        },
    )
    _tell_running_beat(apps)


def _tell_running_beat(apps):
    # Historical models skip PeriodicTask.save(), which tells a running beat to reload.
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unschedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=TASK_NAME).delete()
    _tell_running_beat(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0007_customer_scores"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
