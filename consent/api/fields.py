"""Serializer fields shared by the consent API."""

import datetime

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.utils import dateparse, timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

USERNAME = r"^[\w.@+-]{1,150}$"


class InitialPasswordField(serializers.CharField):
    """A first password set for the user, which they must change at their first portal
    log-in; AUTH_PASSWORD_VALIDATORS apply. Never echoed in an answer or a message."""

    def __init__(self, **kwargs: object) -> None:
        kwargs.setdefault("help_text", "Optional; the user must change it at the first log-in.")
        super().__init__(
            write_only=True,
            required=False,
            trim_whitespace=False,
            max_length=128,
            style={"input_type": "password"},
            **kwargs,
        )

    def to_internal_value(self, data: object) -> str:
        value = super().to_internal_value(data)
        try:
            password_validation.validate_password(value)
        except ValidationError as exc:
            raise serializers.ValidationError(exc.messages) from exc
        return value


@extend_schema_field(OpenApiTypes.STR)
class DateOrDateTimeField(serializers.Field):
    """An ISO date (valid through that day, Luxembourg time) or a timezone-aware date-time."""

    default_error_messages = {
        "invalid": "Use a date (YYYY-MM-DD) or a date-time with a time zone.",
    }

    def to_internal_value(self, data: object) -> datetime.datetime:
        if not isinstance(data, str):
            self.fail("invalid")
        try:
            day = dateparse.parse_date(data) if len(data) == 10 else None
            moment = None if day else dateparse.parse_datetime(data)
        except ValueError:
            self.fail("invalid")
        if moment is not None:
            if timezone.is_naive(moment) or not _in_calendar(moment):
                self.fail("invalid")
            return moment
        if day is None:
            self.fail("invalid")
        if day >= datetime.date(9999, 12, 31):
            self.fail("invalid")  # the day after would not exist
        # Periods exclude their end: "until 2027-01-31" ends at the start of February 1st.
        next_day = datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time())
        return timezone.make_aware(next_day)

    def to_representation(self, value: datetime.datetime) -> str:
        return value.isoformat()


def _in_calendar(moment: datetime.datetime) -> bool:
    # The database stores UTC and answers show local time: year 9999 at -05:00 is past the
    # calendar in UTC (SQLite refuses to write it; PostgreSQL writes it, then psycopg cannot
    # read it back), at 23:30 UTC in Luxembourg time (the answer fails after the write).
    try:
        moment.astimezone(datetime.UTC)
        timezone.localtime(moment)
    except OverflowError:
        return False
    return True
