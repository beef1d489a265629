"""The token look-up loads what select_related loads (PostgreSQL: one prepared statement)."""

import pytest

from consent.models.tokens import hash_token
from consent.services.tokens import token_issue
from consent.token_lookup import _token_through_orm, token_for_hash

pytestmark = pytest.mark.django_db

CAST = [("alice", "CHL"), ("xavier", None), ("chl-pacs", "CHL"), ("dora", None)]


def model_to_dict(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


def loaded(token) -> dict:
    """Every object the request needs, as plain values, read without touching the database."""
    user = token.user

    def role(name: str):
        obj = getattr(user, name, None)
        return model_to_dict(obj) if obj is not None else None

    account = getattr(user, "account", None)
    return {
        "token": model_to_dict(token),
        "user": model_to_dict(user),
        "institution": model_to_dict(token.institution) if token.institution else None,
        "practitioner": role("practitioner"),
        "patient": role("patient"),
        "account": role("account"),
        "account_institution": (
            model_to_dict(account.institution) if account and account.institution else None
        ),
    }


@pytest.mark.parametrize(("username", "institution"), CAST)
def test_it_loads_what_the_orm_loads(cast, django_assert_num_queries, username, institution):
    key_hash = hash_token(token_issue(username=username, institution_code=institution, days=1))
    with django_assert_num_queries(1):
        token = token_for_hash(key_hash)
        fast = loaded(token)
    assert fast == loaded(_token_through_orm(key_hash))
    assert fast["user"]["username"] == username


def test_the_timestamps_are_aware_and_equal(cast):
    key_hash = hash_token(token_issue(username="alice", institution_code="CHL", days=1))
    fast, orm = token_for_hash(key_hash), _token_through_orm(key_hash)
    assert fast.expires_at.tzinfo is not None
    assert (fast.created_at, fast.expires_at) == (orm.created_at, orm.expires_at)


def test_an_unknown_hash_finds_nothing(cast):
    assert token_for_hash("0" * 64) is None
