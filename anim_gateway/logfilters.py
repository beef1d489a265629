"""Logging filters: national identifiers never reach the logs (URLs carry them)."""

import logging
import re

_NATIONAL_ID = re.compile(r"(?<!\d)\d{13}(?!\d)")


def _redact(value: object) -> object:
    return _NATIONAL_ID.sub("<national-id>", value) if isinstance(value, str) else value


class RedactNationalIds(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact(arg) for key, arg in record.args.items()}
        return True
