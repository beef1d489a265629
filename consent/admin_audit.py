"""What the audited administration pages share: row ids as typed, the page refused unaudited."""

from django.http import HttpResponse


def is_row_id(value: str) -> bool:
    return value.isascii() and value.isdigit()  # "²" is a digit to str, not to int()


def audit_unavailable() -> HttpResponse:
    """The answer of a page whose audit event could not be written: no event, no page."""
    return HttpResponse(
        "The audit log is unavailable: this page cannot be shown. Try again later.",
        status=503,
        content_type="text/plain",
    )
