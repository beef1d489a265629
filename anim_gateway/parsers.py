"""JSON request bodies, refused with a clear 400 where Python's json would fail later."""

import io
import re

from rest_framework import parsers
from rest_framework.exceptions import ParseError

# A lone surrogate is valid JSON (an escape such as \ud800) but not Unicode text: no
# database column or response can hold it.
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, refusing nesting deep enough to exhaust the parser's recursion and
    strings that are not Unicode text, instead of failing with a server error."""

    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read()
        try:
            data = super().parse(io.BytesIO(body), media_type, parser_context)
        except RecursionError as exc:
            raise ParseError("JSON parse error - the document is nested too deeply.") from exc
        # Walked only when the text has a surrogate escape at all: the walk of a large
        # body costs far more than this search.
        if _SURROGATE_ESCAPE.search(body) and _holds_lone_surrogate(data):
            raise ParseError(
                "JSON parse error - a string holds a lone surrogate (\\ud800-\\udfff), "
                "which is not Unicode text."
            )
        return data


def _holds_lone_surrogate(data: object) -> bool:
    # Iterative: the document may be nested as deep as the parser allowed.
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False
