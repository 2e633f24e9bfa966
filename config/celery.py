"""The Celery app. The worker is `celery -A config worker`; settings come from Django's CELERY_* names."""

import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

app = Celery("switchboard")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _remember_concurrency(sender, **kwargs):
    """Tell the delivery code how many calls run at once here: it decides whether to share DB connections."""
    from conversations import delivery

    if isinstance(sender.concurrency, int):  # not for an autoscaled worker
        delivery.worker_concurrency = sender.concurrency
