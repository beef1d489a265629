"""Serializer fields the apps' APIs share."""

import datetime

from rest_framework import serializers


class DateTimeField(serializers.DateTimeField):
    """DRF's, with a naive date-time at the very start of year 1 a 400 "out of range": DRF
    checks that its local time exists by converting it to UTC, which overflows there."""

    def enforce_timezone(self, value: datetime.datetime) -> datetime.datetime:
        try:
            return super().enforce_timezone(value)
        except OverflowError:
            self.fail("overflow")
