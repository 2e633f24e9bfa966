"""Filters, search and ordering for the logs (django-filter), and pagination that never counts the table."""

from __future__ import annotations

import django_filters
from django import forms
from django.db.models import Q, QuerySet

from connectors.errors import ErrorKind
from connectors.models import ProviderConnection

from .contacts import contact_prefixes
from .models import Call, Conversation, PromptTemplate

PAGE_SIZE = 50
DATE = forms.DateInput(attrs={"type": "date"})


class Filters(django_filters.FilterSet):
    """A log page's filters; `chosen` is how many are set, for the fold's "Filters (2 set)"."""

    @property
    def chosen(self) -> int:
        # The sort menu's first order is the page's own (submitted with the form), not a filter set.
        own_order = self.form.fields["order"].choices[0][0]
        return sum(
            not (name == "order" and self.form.data.get("order") == own_order) for name in self.form.changed_data
        )


class CallFilter(Filters):
    connection = django_filters.ModelChoiceFilter(queryset=ProviderConnection.objects.all())
    template = django_filters.ModelChoiceFilter(
        field_name="conversation__template", queryset=PromptTemplate.objects.all()
    )
    status = django_filters.ChoiceFilter(choices=Call.Status.choices)
    error_kind = django_filters.ChoiceFilter(choices=ErrorKind.choices, label="Error kind")
    since = django_filters.DateFilter(field_name="queued_at", lookup_expr="date__gte", widget=DATE, label="From")
    until = django_filters.DateFilter(field_name="queued_at", lookup_expr="date__lte", widget=DATE, label="To")
    contact = django_filters.CharFilter(method="contact_starts", label="Contact starts with")
    q = django_filters.CharFilter(method="search", label="Text in reply or error")
    order = django_filters.OrderingFilter(
        fields=(("queued_at", "queued"), ("latency_ms", "latency"), ("completion_tokens", "tokens")),
        # Each order once, in words (django-filter's own labels listed "Newest first" and "Time (descending)").
        choices=[("-queued", "Newest first"), ("queued", "Oldest first"), ("-latency", "Slowest first"),
                 ("latency", "Fastest first"), ("-tokens", "Most tokens first"), ("tokens", "Fewest tokens first")],
        label="Sort",
        empty_label=None,  # no choice is the first: the page's own order
    )  # fmt: skip

    class Meta:
        model = Call
        fields: list[str] = []

    def search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(Q(reply_text__icontains=value) | Q(error_message__icontains=value))

    def contact_starts(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_starts("conversation__contact", value))


class ConversationFilter(Filters):
    connection = django_filters.ModelChoiceFilter(queryset=ProviderConnection.objects.all())
    template = django_filters.ModelChoiceFilter(queryset=PromptTemplate.objects.all())
    since = django_filters.DateFilter(field_name="updated_at", lookup_expr="date__gte", widget=DATE, label="From")
    until = django_filters.DateFilter(field_name="updated_at", lookup_expr="date__lte", widget=DATE, label="To")
    contact = django_filters.CharFilter(method="contact_starts", label="Contact starts with")
    q = django_filters.CharFilter(method="search", label="Text in the conversation")
    # Customers reach Switchboard through a WhatsApp channel or an API integration; everything else was sent
    # from the dashboard (the console, a template's test set): staff tests, which support staff may want out of
    # sight. Short labels: the filter row's selects are narrow.
    source = django_filters.ChoiceFilter(
        method="from_source",
        label="Sent by",
        choices=[("customers", "Customers"), ("tests", "Staff tests")],
    )
    order = django_filters.OrderingFilter(
        fields=(("updated_at", "updated"), ("created_at", "created"), ("contact", "contact")),
        choices=[("-updated", "Latest activity first"), ("updated", "Oldest activity first"),
                 ("-created", "Newest started first"), ("created", "Oldest started first"),
                 ("contact", "Contact A to Z"), ("-contact", "Contact Z to A")],
        label="Sort",
        empty_label=None,  # no choice is the first: the page's own order
    )  # fmt: skip

    class Meta:
        model = Conversation
        fields: list[str] = []

    def contact_starts(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        return queryset.filter(_starts("contact", value))

    def from_source(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        from_customers = Q(channel__isnull=False) | Q(integration__isnull=False)
        return queryset.filter(from_customers) if value == "customers" else queryset.exclude(from_customers)

    def search(self, queryset: QuerySet, name: str, value: str) -> QuerySet:
        # A substring scan of every message: fine for recent logs; a filter on contact or dates narrows it.
        return queryset.filter(pk__in=Conversation.objects.filter(messages__content__icontains=value).values("pk"))


def _starts(field: str, value: str) -> Q:
    """The contact as typed, or a phone number in its stored E.164 form (+15550100100)."""
    condition = Q()
    for prefix in contact_prefixes(value):
        condition |= Q(**{f"{field}__startswith": prefix})
    return condition


# Far past any real log (5,000,000 rows at 50 a page), and far inside what OFFSET can hold.
MAX_PAGE = 100_000


class PageRefused(ValueError):
    """A page number that is not one: the message says which numbers are."""


def page(queryset: QuerySet, number: str | None, size: int | None = None) -> tuple[list, int, bool]:
    """One page of rows, the page number, and whether there is a next one: size + 1 rows read, no COUNT(*)."""
    size = size or PAGE_SIZE
    number_int = 1
    if number not in (None, ""):
        if not (number.isascii() and number.isdigit() and len(number) <= 6 and 1 <= int(number) <= MAX_PAGE):
            raise PageRefused(f"page must be a whole number from 1 to {MAX_PAGE:,}; narrow the filters to go further.")
        number_int = int(number)
    offset = (number_int - 1) * size
    rows = list(queryset[offset : offset + size + 1])
    return rows[:size], number_int, len(rows) > size
