"""A bearer token with its user, institution and role objects, in one prepared statement.

Every API request resolves its token. Through the ORM (``select_related`` over seven tables)
that cost more than a millisecond of Python to compile the query and as much again for
PostgreSQL to plan the join, on every request. On PostgreSQL the same join is written once
from the models' metadata, prepared once per connection, and its row is split into model
instances with the related-object caches filled exactly as ``select_related`` fills them.
SQLite keeps the ORM.
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model

from consent.models import Account, ApiToken, Institution, Patient, Practitioner
from consent.prepared import fetch_prepared


@dataclass(frozen=True)
class _Part:
    """One model's columns in the joined row."""

    alias: str
    model: type[Model]
    join: str  # "" for the token itself


@cache
def _parts() -> tuple[_Part, ...]:
    user = get_user_model()._meta.db_table
    institution = Institution._meta.db_table
    return (
        _Part("t", ApiToken, ""),
        _Part("u", get_user_model(), f"JOIN {user} u ON u.id = t.user_id"),
        _Part("i", Institution, f"LEFT JOIN {institution} i ON i.id = t.institution_id"),
        _Part(
            "p",
            Practitioner,
            f"LEFT JOIN {Practitioner._meta.db_table} p ON p.user_id = u.id",
        ),
        _Part("pa", Patient, f"LEFT JOIN {Patient._meta.db_table} pa ON pa.user_id = u.id"),
        _Part("a", Account, f"LEFT JOIN {Account._meta.db_table} a ON a.user_id = u.id"),
        _Part("ai", Institution, f"LEFT JOIN {institution} ai ON ai.id = a.institution_id"),
    )


@cache
def _attnames(model: type[Model]) -> list[str]:
    return [field.attname for field in model._meta.concrete_fields]


@cache
def _converters(model: type[Model]) -> tuple[tuple[int, Callable], ...]:
    """(column index, from_db_value) of the model's fields that convert what they read:
    looked up once, not on every field of every request."""
    fields = enumerate(model._meta.concrete_fields)
    return tuple((n, f.from_db_value) for n, f in fields if hasattr(f, "from_db_value"))


@cache
def _widths() -> tuple[tuple[_Part, int], ...]:
    return tuple((part, len(part.model._meta.concrete_fields)) for part in _parts())


@cache
def _sql() -> str:
    parts = _parts()
    columns = ", ".join(
        f'{part.alias}."{field.column}"'
        for part in parts
        for field in part.model._meta.concrete_fields
    )
    joins = "\n".join(part.join for part in parts if part.join)
    table = ApiToken._meta.db_table
    # Only table and column names from the models are interpolated; the hash is a parameter.
    return f"SELECT {columns}\nFROM {table} t\n{joins}\nWHERE t.key_hash = %(key_hash)s"


def token_for_hash(key_hash: str) -> ApiToken | None:
    """The token with this hash, its user, institution and the user's role objects loaded."""
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor != "postgresql":
        return _token_through_orm(key_hash)
    rows = fetch_prepared(_sql(), {"key_hash": key_hash}, binary=True)
    return _assembled(db.alias, rows[0]) if rows else None


def _token_through_orm(key_hash: str) -> ApiToken | None:
    tokens = ApiToken.objects.select_related(
        "institution", "user__practitioner", "user__patient", "user__account__institution"
    )
    # A slice, not first(): key_hash is unique, and first() would add an ORDER BY.
    return next(iter(tokens.filter(key_hash=key_hash)[:1]), None)


def _assembled(alias: str, row: tuple) -> ApiToken:
    token, user, institution, practitioner, patient, account, account_institution = (
        _instance(alias, part.model, values) for part, values in _split(row)
    )
    _cache(token, "user", user)
    _cache(token, "institution", institution)
    roles = ((Practitioner, practitioner), (Patient, patient), (Account, account))
    for model, role_object in roles:
        user_field = model._meta.get_field("user")
        # The reverse one-to-one: None cached means "no such object", as select_related does.
        user_field.remote_field.set_cached_value(user, role_object)
        if role_object is not None:
            user_field.set_cached_value(role_object, user)
    if account is not None:
        _cache(account, "institution", account_institution)
    return token


def _split(row: tuple) -> list[tuple[_Part, tuple]]:
    pieces, start = [], 0
    for part, width in _widths():
        pieces.append((part, row[start : start + width]))
        start += width
    return pieces


def _instance(alias: str, model: type[Model], values: tuple) -> Model | None:
    if values[0] is None:  # every model here has its primary key first
        return None
    converted = list(values)
    for n, convert in _converters(model):
        if converted[n] is not None:
            converted[n] = convert(converted[n], None, connections[alias])
    return model.from_db(alias, _attnames(model), converted)


def _cache(instance: Model, name: str, value: Model | None) -> None:
    instance._meta.get_field(name).set_cached_value(instance, value)
