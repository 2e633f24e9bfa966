"""The overview: volume, errors, latency, tokens and cost over a chosen period, with the latest errors."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth.decorators import login_required, permission_required
from django.db import connection as db
from django.db.models import Aggregate, Count, Exists, FloatField, OuterRef, Q, Sum
from django.db.models.functions import TruncHour
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from connectors.models import ProviderConnection

from ..models import Call, ConversationEvent, Feedback

PERIODS = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}


class PercentileCont(Aggregate):
    """PostgreSQL's percentile_cont(p) WITHIN GROUP (ORDER BY x): the percentile without reading rows out."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, percentile: float, **extra):
        super().__init__(expression, percentile=percentile, **extra)


def latency_percentiles(calls) -> dict[str, float | None]:
    succeeded = calls.filter(status=Call.Status.SUCCEEDED, latency_ms__isnull=False)
    if db.vendor == "postgresql":
        return succeeded.aggregate(p50=PercentileCont("latency_ms", 0.5), p95=PercentileCont("latency_ms", 0.95))
    values = sorted(succeeded.values_list("latency_ms", flat=True)[:200_000])  # SQLite: development sizes
    if not values:
        return {"p50": None, "p95": None}
    return {"p50": values[len(values) // 2], "p95": values[min(len(values) - 1, int(len(values) * 0.95))]}


def _summary(calls, since) -> dict:
    """Everything but the percentiles from one grouped scan: per hour, status, error kind, connection and model.

    Grouped by connection id, names looked up after: joining the (tiny, rarely analyzed) connection table
    let PostgreSQL misjudge it and scan the period's calls once per connection.
    """
    rows = list(
        calls.annotate(hour=TruncHour("queued_at"))
        .values("hour", "status", "error_kind", "connection_id", "model")
        .annotate(
            n=Count("id"),
            retries=Count("id", filter=Q(attempt__gt=1)),
            unpriced=Count("id", filter=Q(status=Call.Status.SUCCEEDED, cost_usd__isnull=True)),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            cost=Sum("cost_usd"),
        )
    )
    names = dict(ProviderConnection.objects.filter(pk__in={r["connection_id"] for r in rows}).values_list("pk", "name"))
    totals = {
        "total": 0,
        "failed": 0,
        "retries": 0,
        "answered": 0,
        "unpriced": 0,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": Decimal(0),
    }
    errors: dict[str, int] = defaultdict(int)
    usage: dict[tuple[str, str], dict] = {}
    hourly: dict = defaultdict(lambda: {"ok": 0, "failed": 0})
    daily: dict = defaultdict(lambda: {"ok": 0, "failed": 0})
    local = timezone.get_current_timezone()
    for r in rows:
        failed = r["status"] == Call.Status.FAILED
        totals["total"] += r["n"]
        totals["failed"] += r["n"] if failed else 0
        totals["retries"] += r["retries"]
        totals["answered"] += r["n"] if r["status"] == Call.Status.SUCCEEDED else 0
        totals["unpriced"] += r["unpriced"]
        totals["prompt_tokens"] += r["prompt"] or 0
        totals["completion_tokens"] += r["completion"] or 0
        totals["cost"] += r["cost"] or 0
        if failed:
            errors[r["error_kind"]] += r["n"]
        key = (names.get(r["connection_id"], "?"), r["model"])
        use = usage.setdefault(
            key,
            {
                "connection__name": key[0],
                "model": key[1],
                "calls": 0,
                "prompt": 0,
                "completion": 0,
                "cost": None,  # stays None when nothing was answered: "—", not "$0"
                "unpriced": 0,
            },
        )
        use["calls"] += r["n"]
        use["unpriced"] += r["unpriced"]
        use["prompt"] += r["prompt"] or 0
        use["completion"] += r["completion"] or 0
        if r["cost"] is not None:
            use["cost"] = (use["cost"] or 0) + r["cost"]
        hour = timezone.localtime(r["hour"], local)
        for buckets, bucket in ((hourly, hour), (daily, hour.date())):
            buckets[bucket]["failed" if failed else "ok"] += r["n"] if r["status"] in ("succeeded", "failed") else 0
    # Customer messages, not attempts: every attempt after the first is a retry of a failed one, so the
    # messages are the first attempts, and the failures that were final are the failed attempts less the
    # retries they led to (at the edges of the period, a retry may fall on the other side).
    totals["messages"] = totals["total"] - totals["retries"]
    totals["failed_messages"] = max(0, totals["failed"] - totals["retries"])
    totals["waiting"] = max(0, totals["messages"] - totals["answered"] - totals["failed_messages"])
    labels = dict(Call._meta.get_field("error_kind").choices)
    error_rows = [
        {"error_kind": kind, "label": labels.get(kind, kind), "n": n, "rate": n / totals["total"] * 100}
        for kind, n in sorted(errors.items(), key=lambda item: -item[1])
    ]
    recent = timezone.localtime(max(since, timezone.now() - timedelta(days=7)), local)
    return {
        "totals": totals,
        "errors": error_rows,
        "usage": sorted(usage.values(), key=lambda u: -u["calls"])[:50],
        "hourly": _chart(
            {h: v for h, v in hourly.items() if h >= recent.replace(minute=0, second=0, microsecond=0)}, "%d %b %H:00"
        ),
        "daily": _chart(daily, "%d %b"),
    }


def _chart(buckets: dict, label_format: str) -> dict[str, list]:
    ordered = sorted(buckets.items())
    return {
        "labels": [bucket.strftime(label_format) for bucket, _ in ordered],
        "succeeded": [v["ok"] for _, v in ordered],
        "failed": [v["failed"] for _, v in ordered],
    }


def final_failures(calls):
    """Failed attempts that were the last for their message: no retry followed them."""
    retried = Call.objects.filter(message_id=OuterRef("message_id"), attempt=OuterRef("attempt") + 1)
    return calls.filter(status=Call.Status.FAILED).exclude(Exists(retried))


@login_required
@permission_required("conversations.view_call", raise_exception=True)
def overview(request: HttpRequest) -> HttpResponse:
    period = request.GET.get("period", "24h")
    period = period if period in PERIODS else "24h"
    since = timezone.now() - PERIODS[period]
    calls = Call.objects.filter(queued_at__gte=since)
    summary = _summary(calls, since)
    totals = summary["totals"]
    charts = {
        "hourly": summary["hourly"],
        "daily": summary["daily"],
        "errors": {"labels": [r["label"] for r in summary["errors"]], "counts": [r["n"] for r in summary["errors"]]},
    }
    context = {
        "period": period,
        "periods": list(PERIODS),
        "totals": totals,
        "error_rate": totals["failed_messages"] / totals["messages"] * 100 if totals["messages"] else 0,
        "latency": latency_percentiles(calls),
        "errors": summary["errors"],
        "usage": summary["usage"],
        "charts": charts,
        "last_errors": final_failures(calls).select_related("connection").order_by("-queued_at")[:10],
        "feedback": Feedback.objects.filter(created_at__gte=since).aggregate(
            up=Count("id", filter=Q(good=True)), down=Count("id", filter=Q(good=False))
        ),
        "handovers": ConversationEvent.objects.filter(
            created_at__gte=since,
            kind__in=[
                ConversationEvent.Kind.ASKED_FOR_A_PERSON,
                ConversationEvent.Kind.MODEL_HANDED_OVER,
                ConversationEvent.Kind.PROVIDER_FAILED,
            ],
        ).count(),
    }
    return render(request, "conversations/overview.html", context)
