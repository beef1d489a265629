"""Logs never carry a national identifier, even when it is in a URL."""

import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.core.servers.basehttp import WSGIRequestHandler
from django.db import IntegrityError

from anim_gateway.logfilters import RedactNationalIds

NATIONAL_ID = re.compile(r"(?<!\d)\d{13}(?!\d)")


def record(msg: object, *args: object) -> logging.LogRecord:
    return logging.LogRecord("django.request", logging.WARNING, __file__, 1, msg, args, None)


def reached(name: str) -> list[logging.Handler]:
    """The configured handlers that the logger's records reach: those named in LOGGING or in
    Django's defaults (pytest's capture handlers have no name), so that settings are tested."""
    handlers, logger = [], logging.getLogger(name)
    while logger:
        handlers += [handler for handler in logger.handlers if handler.name]
        logger = logger.parent if logger.propagate else None
    return handlers


@contextmanager
def written(name: str) -> Iterator[io.StringIO]:
    """What those handlers write, their streams swapped for the test."""
    out = io.StringIO()
    streams = {
        handler: handler.setStream(out)
        for handler in reached(name)
        if isinstance(handler, logging.StreamHandler)
    }
    try:
        yield out
    finally:
        for handler, stream in streams.items():
            handler.setStream(stream)


def test_it_redacts_national_ids_in_arguments() -> None:
    item = record("%s: %s", "Not Found", "/patients/1980051700166/studies/")
    RedactNationalIds().filter(item)
    assert item.getMessage() == "Not Found: /patients/<national-id>/studies/"


def test_it_redacts_national_ids_in_the_message_and_keeps_other_numbers() -> None:
    item = record("patient 1980051700166 and uid 1.2.840.10008.1234567890123456")
    RedactNationalIds().filter(item)
    assert "1980051700166" not in item.getMessage()
    assert "1234567890123456" in item.getMessage()


def test_it_redacts_arguments_that_are_not_strings() -> None:
    error = IntegrityError("Key (national_id)=(1980051700166) already exists.")
    items = [record("Not stored: %s", error), record(error), record("%(error)s", {"error": error})]
    for item in items:
        RedactNationalIds().filter(item)
    assert [item.getMessage() for item in items] == [
        "Not stored: Key (national_id)=(<national-id>) already exists.",
        "Key (national_id)=(<national-id>) already exists.",
        "Key (national_id)=(<national-id>) already exists.",
    ]


def test_a_malformed_call_is_logged_redacted_rather_than_raising() -> None:
    item = record("%s and %s", "/patients/1980051700166/")
    RedactNationalIds().filter(item)
    assert item.getMessage() == "'%s and %s' % ('/patients/<national-id>/',)"


def test_it_redacts_the_stack() -> None:
    item = record("Slow lookup")
    item.stack_info = 'Stack (most recent call last):\n  lookup("1980051700166")'
    RedactNationalIds().filter(item)
    assert item.stack_info == 'Stack (most recent call last):\n  lookup("<national-id>")'


def test_an_exception_s_traceback_is_redacted() -> None:
    with written("studies.tasks") as out:
        try:
            raise IntegrityError("Key (national_id)=(1980051700166) already exists.")
        except IntegrityError:
            logging.getLogger("studies.tasks").exception("The patient could not be recorded")
    assert "The patient could not be recorded\nTraceback (most recent call last):" in (
        out.getvalue()
    )
    assert "IntegrityError: Key (national_id)=(<national-id>) already exists." in out.getvalue()
    assert not NATIONAL_ID.search(out.getvalue())


def test_the_development_server_s_request_line_is_redacted() -> None:
    server = object.__new__(WSGIRequestHandler)  # its request log only, no connection
    server.request = None
    server.requestline = "GET /patients/1980051700166/ HTTP/1.1"
    with written("django.server") as out:
        server.log_request(200, 1234)
    assert '"GET /patients/<national-id>/ HTTP/1.1" 200 1234' in out.getvalue()
    assert not NATIONAL_ID.search(out.getvalue())


@pytest.mark.parametrize("debug", [True, False])
def test_django_s_own_handlers_redact(settings, mailoutbox, debug) -> None:
    settings.DEBUG = debug  # Django's defaults: a console handler when DEBUG, mail otherwise
    settings.ADMINS = [("Operations", "ops@example.lu")]  # should they ever be set
    with written("django.request") as out:
        logging.getLogger("django.request").error(
            "Internal Server Error: %s", "/patients/1980051700166/"
        )
    assert "Internal Server Error: /patients/<national-id>/" in out.getvalue()
    mails = [f"{mail.subject}\n{mail.body}" for mail in mailoutbox]
    assert not NATIONAL_ID.search("\n".join([out.getvalue(), *mails]))


@pytest.mark.parametrize(
    "name", ["django.request", "django.server", "django.security.DisallowedHost", "studies"]
)
def test_every_handler_a_request_or_an_error_reaches_redacts(name) -> None:
    handlers = reached(name)
    assert handlers
    for handler in handlers:
        assert any(isinstance(item, RedactNationalIds) for item in handler.filters), handler.name


def test_the_console_handler_uses_the_filter(settings) -> None:
    assert "redact" in settings.LOGGING["handlers"]["console"]["filters"]


def test_a_celery_worker_keeps_the_redacting_handlers() -> None:
    from anim_gateway.celery import app

    root = logging.getLogger()
    before = list(root.handlers)
    try:
        # What a worker does at start (celery worker's logging set-up).
        app.log.setup_logging_subsystem(loglevel="INFO")
        app.log.setup_task_loggers(loglevel="INFO")
        assert root.handlers == before  # none replaced, none added
        # Stream handlers only: pytest adds capturing handlers of its own.
        task = logging.getLogger("celery.task").handlers
        streams = [h for h in task if type(h) is logging.StreamHandler]
        assert streams
        assert all(any(isinstance(f, RedactNationalIds) for f in h.filters) for h in streams)
        redacting = [
            h for h in root.handlers if any(isinstance(f, RedactNationalIds) for f in h.filters)
        ]
        assert redacting  # LOGGING's console handler
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
        for handler in before:
            if handler not in root.handlers:
                root.addHandler(handler)
        app.log.already_setup = False


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_an_argument_that_cannot_be_printed_never_raises_into_the_caller() -> None:
    item = record("Could not store %s", _Unprintable())
    assert RedactNationalIds().filter(item)
    assert item.getMessage() == "<a log record that cannot be printed>"


@pytest.mark.parametrize(
    "written_so", ["1980-0517-00166", "1980 0517 00166", "1980%200517%2000166", "19800517-00166"]
)
def test_a_national_id_written_with_separators_is_redacted(written_so: str) -> None:
    item = record("Forbidden: /api/v1/patients/%s/studies/", written_so)
    RedactNationalIds().filter(item)
    assert item.getMessage() == "Forbidden: /api/v1/patients/<national-id>/studies/"


def test_uids_and_dates_are_left_alone() -> None:
    text = "Study 1.2.840.10008.5.1.4.1.1.2.123456 stored 2026-11-30 21:22:50, 41 of 1000"
    item = record("%s", text)
    RedactNationalIds().filter(item)
    assert item.getMessage() == text


@pytest.mark.parametrize(
    "written_so",
    ["1980.05.17.001-66", "1980.0517.00166", "1980.05.17.001.66", "19800517.001.66"],
)
def test_a_national_id_written_with_dots_is_redacted(written_so: str) -> None:
    # The gateway reads these as the identifier too (consent.national_id.compact).
    item = record("Forbidden: /api/v1/patients/%s/studies/", written_so)
    RedactNationalIds().filter(item)
    assert item.getMessage() == "Forbidden: /api/v1/patients/<national-id>/studies/"


@pytest.mark.parametrize(
    "uid",
    [
        "1.2.3.4.5.6.7.8.9.10.11",  # 13 digits, not an identifier
        "1.2.826.0.1.3680043.8.498.1980.05.17.001.66",  # an identifier's digits in a UID
        "1980.05.17.001.66.1",  # a longer dotted run is not one
        "2.1980.05.17.001.66",
    ],
)
def test_dotted_digits_that_are_not_an_identifier_are_left_alone(uid: str) -> None:
    item = record("Stored %s", uid)
    RedactNationalIds().filter(item)
    assert item.getMessage() == f"Stored {uid}"
