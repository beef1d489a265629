"""Logging filters: national identifiers never reach the logs (URLs carry them)."""

import logging
import re

from consent import national_id

# 13 digits, also as a client may write them in a URL ("1980-0517-00166", "1980 0517 00166"
# or its %20 form: the gateway reads those as the identifier).
_NATIONAL_ID = re.compile(r"(?<!\d)\d(?:(?:[ \-]|%20)?\d){12}(?!\d)")
# With dots too ("1980.05.17.001-66": the gateway reads it as the identifier as well), but
# DICOM UIDs are written with dots, and a UID in a log says which object failed: a dotted
# form is redacted only when it is a valid identifier (birth date and both check digits)
# and not part of a longer run of dotted digits, as any digits of a UID are.
_DOTTED_NATIONAL_ID = re.compile(r"(?<!\d)(?<!\d\.)\d(?:(?:[ .\-]|%20)?\d){12}(?!\d)(?!\.\d)")
_TRACEBACKS = logging.Formatter()  # the standard formatter's rendering of a traceback


def _dotted(match: re.Match) -> str:
    written = match.group()
    return "<national-id>" if national_id.is_valid(written.replace("%20", "")) else written


def _redact(value: object) -> object:
    if not isinstance(value, str):
        return value
    return _DOTTED_NATIONAL_ID.sub(_dotted, _NATIONAL_ID.sub("<national-id>", value))


def _message(record: logging.LogRecord) -> str:
    """The message as it will read: any argument's str() may hold one (an exception, say)."""
    try:
        return record.getMessage()
    except Exception:
        # A malformed call, or an argument whose str() raises: a filter runs outside the
        # handler's error handling, so raising here would raise in the caller's code. Even
        # repr() may raise (a model's __repr__ calls its __str__).
        try:
            return f"{record.msg!r} % {record.args!r}"
        except Exception:
            return "<a log record that cannot be printed>"


class RedactNationalIds(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redact(_message(record))
        record.args = ()
        # Formatters use the cached exc_text when set, and only format exc_info otherwise: a
        # database error ("Key (national_id)=(...) already exists.") is redacted here, while
        # exc_info stays for whatever inspects the exception itself.
        if record.exc_info and not record.exc_text:
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        record.exc_text = _redact(record.exc_text)
        record.stack_info = _redact(record.stack_info)
        return True
