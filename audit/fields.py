"""A dict stored as its canonical JSON text: the exact bytes the hash chain covers."""

import json

from django.db import models

from audit import canonical


class CanonicalJSONField(models.TextField):
    """Reads back as a dict; stored as canonical.encode_content(dict) (sorted keys, compact,
    ASCII), so that verification can hash the stored text without parsing it."""

    def from_db_value(self, value: str | None, expression: object, connection: object) -> object:
        if value is None:
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            # Like Django's JSONField: a damaged value is returned as it is (verification
            # then reports the row instead of failing to read it).
            return value

    def to_python(self, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    def get_prep_value(self, value: object) -> str | None:
        if value is None or isinstance(value, str):
            return value
        return canonical.encode_content(value)
