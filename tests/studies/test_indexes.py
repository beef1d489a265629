"""The index tables keep one index per need: every index is written at every ingest."""

import pytest
from django.db import IntegrityError, connection, transaction

from consent.models import Institution
from studies.models import Instance, Series, Study
from tests.conftest import require_postgres

TABLES = [Study._meta.db_table, Series._meta.db_table, Instance._meta.db_table]

# Every index of a table: its name, columns in order, unique, partial, its definition.
_INDEXES = """
SELECT c.relname, ARRAY(
           SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           ORDER BY k.n),
       i.indisunique, i.indpred IS NOT NULL, pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = %s::regclass
"""


def _indexes(table: str) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(_INDEXES, [table])
        return cursor.fetchall()


@pytest.mark.django_db
@pytest.mark.parametrize("table", TABLES)
def test_no_index_is_covered_by_another(table):
    """No plain index whose columns lead another index: that one serves its look-ups."""
    require_postgres()
    indexes = _indexes(table)
    covered = [
        (name, other)
        for name, columns, unique, partial, _ in indexes
        if not unique and not partial
        for other, other_columns, _, other_partial, _ in indexes
        if other != name and not other_partial and other_columns[: len(columns)] == columns
    ]
    assert covered == []


@pytest.mark.django_db
@pytest.mark.parametrize("table", TABLES)
def test_no_like_only_index(table):
    """UIDs and storage keys are matched whole: no varchar_pattern_ops index of them."""
    require_postgres()
    assert [name for name, *_, definition in _indexes(table) if "pattern_ops" in definition] == []


@pytest.mark.django_db
def test_uids_and_storage_keys_stay_unique(cast):
    """The unique constraints, renamed by migration 0003, still refuse a second row."""
    chl = Institution.objects.get(code="CHL")
    study = Study.objects.create(study_uid="1.2.826.0.1.1", institution=chl)
    series = Series.objects.create(study=study, series_uid="1.2.826.0.1.2")
    fields = dict(sop_class_uid="1.2", transfer_syntax_uid="1.2.840.10008.1.2.1", size=1)
    Instance.objects.create(
        study=study, series=series, sop_instance_uid="1.2.826.0.1.3", storage_key="a", **fields
    )
    duplicates = [
        lambda: Study.objects.create(study_uid=study.study_uid, institution=chl),
        lambda: Series.objects.create(study=study, series_uid=series.series_uid),
        lambda: Instance.objects.create(
            study=study, series=series, sop_instance_uid="1.2.826.0.1.3", storage_key="b", **fields
        ),
        lambda: Instance.objects.create(
            study=study, series=series, sop_instance_uid="1.2.826.0.1.4", storage_key="a", **fields
        ),
    ]
    for create in duplicates:
        with pytest.raises(IntegrityError), transaction.atomic():
            create()
