"""config/celery.py: Celery runs with the CELERY_* settings Django loaded, nothing lost in the copy."""

from __future__ import annotations

from django.conf import settings

from config.celery import app


def test_celery_runs_with_the_django_settings():
    conf = app.conf
    assert conf.broker_url == settings.CELERY_BROKER_URL
    assert conf.broker_transport == settings.CELERY_BROKER_TRANSPORT
    assert conf.broker_transport_options == {
        "untracked_tasks": ["conversations.execute_call", "conversations.deliver_outbound"],
        "socket_timeout": 3,
        "socket_connect_timeout": 2,
    }
    assert conf.task_publish_retry_policy["max_retries"] == 1
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost, conf.task_ignore_result) == (True, True, True)
    assert conf.worker_prefetch_multiplier == 1
    assert conf.beat_schedule["sweep-stuck-calls"]["task"] == "conversations.sweep_calls"
    assert conf.task_default_queue == "celery"  # a name we never set: Celery's own default still applies
    assert app.timezone.key == settings.TIME_ZONE  # no CELERY_TIMEZONE: Celery takes Django's
