"""Logs never carry a national identifier, even when it is in a URL."""

import logging

from anim_gateway.logfilters import RedactNationalIds


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("django.request", logging.WARNING, __file__, 1, msg, args, None)


def test_it_redacts_national_ids_in_arguments() -> None:
    item = record("%s: %s", "Not Found", "/patients/1980051700166/studies/")
    RedactNationalIds().filter(item)
    assert item.getMessage() == "Not Found: /patients/<national-id>/studies/"


def test_it_redacts_national_ids_in_the_message_and_keeps_other_numbers() -> None:
    item = record("patient 1980051700166 and uid 1.2.840.10008.1234567890123456")
    RedactNationalIds().filter(item)
    assert "1980051700166" not in item.getMessage()
    assert "1234567890123456" in item.getMessage()


def test_the_console_handler_uses_the_filter(settings) -> None:
    assert "redact" in settings.LOGGING["handlers"]["console"]["filters"]
