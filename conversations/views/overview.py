"""The overview: volume, errors, latency, tokens and cost over a chosen period, with the latest errors."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required, permission_required
from django.db import connection as db
from django.db.models import Aggregate, Count, FloatField, Q, Sum
from django.db.models.functions import TruncDay, TruncHour
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from ..models import Call

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


def _series(calls, trunc, label_format: str) -> dict[str, list]:
    rows = (
        calls.annotate(bucket=trunc("queued_at"))
        .values("bucket")
        .annotate(
            ok=Count("id", filter=Q(status=Call.Status.SUCCEEDED)),
            failed=Count("id", filter=Q(status=Call.Status.FAILED)),
        )
        .order_by("bucket")
    )
    local = timezone.get_current_timezone()
    return {
        "labels": [timezone.localtime(r["bucket"], local).strftime(label_format) for r in rows],
        "succeeded": [r["ok"] for r in rows],
        "failed": [r["failed"] for r in rows],
    }


@login_required
@permission_required("conversations.view_call", raise_exception=True)
def overview(request: HttpRequest) -> HttpResponse:
    period = request.GET.get("period", "24h")
    period = period if period in PERIODS else "24h"
    since = timezone.now() - PERIODS[period]
    calls = Call.objects.filter(queued_at__gte=since)

    totals = calls.aggregate(
        total=Count("id"),
        failed=Count("id", filter=Q(status=Call.Status.FAILED)),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
        cost=Sum("cost_usd"),
    )
    errors = list(calls.filter(status=Call.Status.FAILED).values("error_kind").annotate(n=Count("id")).order_by("-n"))
    for row in errors:
        row["rate"] = row["n"] / totals["total"] * 100 if totals["total"] else 0
        row["label"] = dict(Call._meta.get_field("error_kind").choices).get(row["error_kind"], row["error_kind"])
    usage = list(
        calls.values("connection__name", "model")
        .annotate(
            calls=Count("id"),
            prompt=Sum("prompt_tokens"),
            completion=Sum("completion_tokens"),
            cost=Sum("cost_usd"),
        )
        .order_by("-calls")[:50]
    )
    charts = {
        "hourly": _series(
            calls.filter(queued_at__gte=max(since, timezone.now() - timedelta(days=7))), TruncHour, "%d %b %H:00"
        ),
        "daily": _series(calls, TruncDay, "%d %b"),
        "errors": {"labels": [r["label"] for r in errors], "counts": [r["n"] for r in errors]},
    }
    context = {
        "period": period,
        "periods": list(PERIODS),
        "totals": totals,
        "error_rate": totals["failed"] / totals["total"] * 100 if totals["total"] else 0,
        "latency": latency_percentiles(calls),
        "errors": errors,
        "usage": usage,
        "charts": charts,
        "last_errors": calls.filter(status=Call.Status.FAILED).select_related("connection").order_by("-queued_at")[:10],
    }
    return render(request, "conversations/overview.html", context)
