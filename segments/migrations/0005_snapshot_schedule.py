"""Schedule `segments.tasks.snapshot_segment_sizes` every hour with django-celery-beat's
database scheduler: it writes each segment's member count for the merchant-local day (the
last run of a day wins), so a day is never missed whatever the merchant's time zone.
Idempotent: running it again updates the same rows."""

from django.db import migrations
from django.utils import timezone

TASK_NAME = "Snapshot segment sizes"
TASK = "segments.tasks.snapshot_segment_sizes"


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
            "description": "Record every segment's member count for the size-over-time chart.",
        },
    )
    _tell_running_beat(apps)


def _tell_running_beat(apps):
    # Historical models skip PeriodicTask.save(), which is what normally tells a running
    # beat (DatabaseScheduler) that its schedule changed.
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unschedule(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name=TASK_NAME).delete()
    _tell_running_beat(apps)


class Migration(migrations.Migration):
    dependencies = [
        ("segments", "0004_segment_stats_and_snapshots"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
