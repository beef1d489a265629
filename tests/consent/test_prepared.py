"""Prepared statements on Django's connection: planned once, and never keeping a closed one."""

import gc
import weakref

import pytest
from django.db import connection

from consent.prepared import fetch_prepared
from tests.conftest import require_postgres


@pytest.mark.django_db(transaction=True)  # a connection closed inside a test's transaction stays
def test_a_closed_connection_is_not_kept_alive_by_its_cursor():
    require_postgres()
    assert fetch_prepared("SELECT %s::int + 1", [41]) == [(42,)]
    closed = weakref.ref(connection.connection)
    connection.close()
    assert fetch_prepared("SELECT %s::int + 1", [1]) == [(2,)]
    gc.collect()
    assert closed() is None


@pytest.mark.django_db
def test_the_statement_is_prepared_once_per_connection():
    require_postgres()
    for n in range(3):
        fetch_prepared("SELECT %s::int * 2 AS doubled_for_the_prepared_test", [n])
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%doubled_for_the_prepared_test%"],
        )
        assert cursor.fetchone()[0] == 1
