"""Schedule `campaigns.tasks.dispatch` every minute with django-celery-beat's database
scheduler: it starts scheduled campaigns when due, requeues deliveries whose sender died,
resumes sends that waited (quiet hours, backoff) and finishes the campaigns with nothing
left. Idempotent."""

from django.db import migrations
from django.utils import timezone

TASK_NAME = "Dispatch campaigns"
TASK = "campaigns.tasks.dispatch"


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.update_or_create(
        name=TASK_NAME,
        defaults={
            "task": TASK,
            "interval": every_minute,
            "crontab": None,
            "solar": None,
            "clocked": None,
            "enabled": True,
            "description": "Start due campaigns, resume and finish sends.",
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
        ("campaigns", "0002_campaigns_and_deliveries"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(schedule, unschedule)]
