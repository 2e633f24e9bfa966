"""The admin's history pages for models whose every change is kept (django-simple-history).

simple-history looks the object up with the id exactly as it appears in the address, so `/history/abc/`
on an integer key raised ValueError, a 500. Here an id the key field cannot read is "no such object", a
404, before simple-history sees it; likewise the version id of a single historical record.
"""

from __future__ import annotations

from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.http import Http404
from simple_history.admin import SimpleHistoryAdmin


def _readable(field, value: str) -> bool:
    try:
        field.to_python(unquote(value))
    except (ValidationError, ValueError, TypeError):
        return False
    return True


class HistoryAdmin(SimpleHistoryAdmin):
    def history_view(self, request, object_id, extra_context=None):
        if not _readable(self.model._meta.pk, object_id):
            raise Http404(f"No {self.model._meta.verbose_name} with id {object_id!r}.")
        return super().history_view(request, object_id, extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        history_pk = self.model.history.model._meta.pk
        if not (_readable(self.model._meta.pk, object_id) and _readable(history_pk, version_id)):
            raise Http404(f"No version {version_id!r} of {self.model._meta.verbose_name} {object_id!r}.")
        return super().history_form_view(request, object_id, version_id, extra_context)
