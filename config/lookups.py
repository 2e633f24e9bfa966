"""One ORM rule for numbers that come from outside: `pk__in=[...]` drops the ones no column can hold.

Django already answers `id=99999999999999999999` with "no such row" (its IntegerFieldOverflow lookups), but
not `id__in=[...]`: SQLite raises OverflowError and PostgreSQL "integer out of range", a 500 for a form that
takes several ids (an integration's templates) or an admin filter. A number outside the column's range
matches nothing, so it is left out of the list; a list left empty matches nothing at all.

And a `__year` filter on a date (the admin's date filters, from the address) refuses a year Python's dates
cannot hold (0, 10000, a 20-digit one) when the filter is built, which the admin answers as a bad filter,
instead of failing while the query runs.
"""

from __future__ import annotations

from django.core.exceptions import EmptyResultSet
from django.db.models import IntegerField
from django.db.models.functions import ExtractIsoYear, ExtractYear
from django.db.models.lookups import (
    In,
    YearExact,
    YearGt,
    YearGte,
    YearLt,
    YearLte,
)


class IntegerIn(In):
    def process_rhs(self, compiler, connection):
        if self.rhs_is_direct_value():
            low, high = connection.ops.integer_field_range(self.lhs.output_field.get_internal_type())
            kept = [
                value
                for value in self.rhs
                if not isinstance(value, int) or ((low is None or value >= low) and (high is None or value <= high))
            ]
            if not kept:
                raise EmptyResultSet
            self.rhs = kept
        return super().process_rhs(compiler, connection)


class _YearInRange:
    def get_prep_lookup(self):
        year = super().get_prep_lookup()
        if isinstance(year, int) and not 1 <= year <= 9999:
            raise ValueError(f"{year} is not a year a date can have (1 to 9999).")
        return year


def register() -> None:
    """Called once, from an app's ready()."""
    IntegerField.register_lookup(IntegerIn)
    for transform in (ExtractYear, ExtractIsoYear):
        for base in (YearExact, YearGt, YearGte, YearLt, YearLte):
            transform.register_lookup(type(f"Checked{base.__name__}", (_YearInRange, base), {}))
