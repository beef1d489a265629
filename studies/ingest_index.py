"""The index side of ingest: light rows of what is stored, and one transaction per batch."""

import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import psycopg
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import F, JSONField, Value
from django.utils import timezone

from consent.models import Institution, Patient
from studies import ingest_sql, reconcile, storage
from studies.dicom import Header
from studies.models import Instance, Series, Study
from studies.spool import Spooled

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    institution: Institution | None  # whose identifier space the PatientID belongs to
    patient: Patient | None


@dataclass
class StudyRow:
    """A stored study as ingest needs it (a StudyRef for the gate)."""

    pk: int
    study_uid: str
    institution_id: int
    dicom_patient_id: str
    patient_id: int | None
    modalities: set[str]


@dataclass(frozen=True)
class SeriesRow:
    pk: int
    study_id: int
    institution_id: int
    has_preview: bool


@dataclass(frozen=True)
class InstanceRow:
    sha256: str
    study_uid: str
    institution_id: int
    patient_id: int | None
    # Its stored copy failed its fixity check: the same bytes sent again restore it.
    fixity_failed: bool = False


# At most this many instances are remembered in IndexCache.created (a few MB).
CREATED_LIMIT = 50_000


@dataclass
class IndexCache:
    """Studies and series a session has indexed or seen, not looked up again: their UID,
    institution, PatientID and study never change (a stale row fails on write, and the
    object is then indexed again from fresh rows)."""

    studies: dict[str, StudyRow] = field(default_factory=dict)
    series: dict[str, SeriesRow] = field(default_factory=dict)
    # The studies this session created, with the instances it indexed in them. Another
    # instance of such a study is new unless a concurrent writer raced it in, which the
    # unique SOP Instance UID then refuses (the object is indexed again from fresh rows),
    # so it is not looked up first: one round trip less per instance of a C-STORE
    # association after a study's first.
    created: dict[str, set[str]] = field(default_factory=dict)
    remembered: int = 0  # instances in ``created``

    def forget(self, header: Header) -> None:
        self.studies.pop(header.study_uid, None)
        self.series.pop(header.series_uid, None)
        self.created.pop(header.study_uid, None)

    def surely_new(self, headers: list[Header]) -> bool:
        """Whether every instance is a new one of a study this session created, in a series
        it knows."""
        for header in headers:
            stored = self.created.get(header.study_uid)
            if (
                stored is None
                or header.sop_instance_uid in stored
                or header.study_uid not in self.studies
                or header.series_uid not in self.series
            ):
                return False
        return bool(headers)

    def indexed(self, headers: Iterable[Header], *, created: Iterable[str]) -> None:
        """Note the instances just indexed, in the studies this session created."""
        for uid in created:
            self.created.setdefault(uid, set())
        for header in headers:
            if header.study_uid in self.created:
                self.created[header.study_uid].add(header.sop_instance_uid)
                self.remembered += 1
        if self.remembered > CREATED_LIMIT:
            # A long session (an import of a whole archive) forgets: its next instances are
            # looked up first again, which is only slower.
            self.created.clear()
            self.remembered = 0


@dataclass
class Planned:
    """An object that passed every check: to be moved into storage and indexed."""

    spooled: Spooled
    header: Header
    identity: Identity | None = None  # known when its study was not indexed yet
    key: str = ""  # its storage key once stored


def identity_of(*, performing: Institution, header: Header) -> Identity:
    """Whose identifier the PatientID is, and the patient it names (None: unreconciled)."""
    institution = reconcile.identifier_institution(issuer=header.issuer, performing=performing)
    patient = reconcile.patient_for(institution=institution, patient_id=header.patient_id)
    return Identity(institution=institution, patient=patient)


def identities_of(
    *, performing: Institution, headers: list[Header]
) -> dict[tuple[str, str], Identity]:
    """The identity of each (issuer, PatientID) of a batch, in a query or two."""
    issuers = {h.issuer for h in headers}
    institutions = {
        issuer: reconcile.identifier_institution(issuer=issuer, performing=performing)
        for issuer in issuers
    }
    patients = {}
    for institution in {i for i in institutions.values() if i is not None}:
        wanted = {h.patient_id for h in headers if institutions[h.issuer] == institution}
        found = reconcile.patients_for(institution=institution, patient_ids=wanted)
        patients |= {(institution.pk, value): patient for value, patient in found.items()}
    identities = {}
    for header in headers:
        institution = institutions[header.issuer]
        key = (institution.pk if institution else None, header.patient_id)
        identities[header.issuer, header.patient_id] = Identity(institution, patients.get(key))
    return identities


def rows_find(
    headers: list[Header], *, cache: IndexCache
) -> tuple[dict[str, InstanceRow], dict[str, StudyRow], dict[str, SeriesRow]]:
    """The stored instances, studies and series a batch names (in one statement on
    PostgreSQL); studies and series the session knows are not looked up again."""
    sops = {h.sop_instance_uid for h in headers}
    study_uids = {h.study_uid for h in headers}
    series_uids = {h.series_uid for h in headers}
    if cache.surely_new(headers):
        return (
            {},
            {uid: cache.studies[uid] for uid in study_uids},
            {uid: cache.series[uid] for uid in series_uids},
        )
    if connection.vendor != "postgresql":
        return (
            instances_find(sops),
            studies_find(study_uids, cache=cache),
            series_find(series_uids, cache=cache),
        )
    studies = {uid: cache.studies[uid] for uid in study_uids if uid in cache.studies}
    series = {uid: cache.series[uid] for uid in series_uids if uid in cache.series}
    instances = {}
    rows = ingest_sql.known_rows(
        instances=sops, studies=study_uids - set(studies), series=series_uids - set(series)
    )
    for kind, uid, a, b, c, text, more, flag in rows:
        if kind == "i":
            instances[uid] = InstanceRow(
                sha256=text, study_uid=more, institution_id=a, patient_id=b, fixity_failed=flag
            )
        elif kind == "s":
            studies[uid] = cache.studies[uid] = StudyRow(a, uid, b, text, c, _split(more))
        else:
            series[uid] = cache.series[uid] = SeriesRow(a, b, c, bool(text))
    return instances, studies, series


def _split(modalities: str) -> set[str]:
    return {m for m in modalities.split("\\") if m}


def instances_find(sop_uids: Iterable[str]) -> dict[str, InstanceRow]:
    rows = Instance.objects.filter(sop_instance_uid__in=set(sop_uids)).values_list(
        "sop_instance_uid",
        "sha256",
        "study__study_uid",
        "study__institution_id",
        "study__patient_id",
        "fixity_ok",
    )
    return {
        sop: InstanceRow(*rest, fixity_failed=fixity_ok is False) for sop, *rest, fixity_ok in rows
    }


def studies_find(uids: Iterable[str], *, cache: IndexCache) -> dict[str, StudyRow]:
    found = {uid: cache.studies[uid] for uid in uids if uid in cache.studies}
    missing = set(uids) - set(found)
    if missing:
        rows = Study.objects.filter(study_uid__in=missing).values_list(
            "pk", "study_uid", "institution_id", "dicom_patient_id", "patient_id", "modalities"
        )
        for *head, modalities in rows:
            row = StudyRow(*head, modalities=_split(modalities))
            found[row.study_uid] = cache.studies[row.study_uid] = row
    return found


def series_find(uids: Iterable[str], *, cache: IndexCache) -> dict[str, SeriesRow]:
    found = {uid: cache.series[uid] for uid in uids if uid in cache.series}
    missing = set(uids) - set(found)
    if missing:
        rows = Series.objects.filter(series_uid__in=missing).values_list(
            "series_uid", "pk", "study_id", "study__institution_id", "preview_key"
        )
        for uid, pk, study_id, institution_id, preview in rows:
            found[uid] = cache.series[uid] = SeriesRow(pk, study_id, institution_id, bool(preview))
    return found


def objects_put(items: list[Planned]) -> None:
    """Move each spool file into storage and make them all durable (before their index
    commits); on a failure, delete those already moved."""
    try:
        for item in items:
            header = item.header
            key = storage.object_key(
                study_uid=header.study_uid,
                series_uid=header.series_uid,
                sop_uid=header.sop_instance_uid,
            )
            item.key = storage.object_put(key=key, spooled=item.spooled)
        storage.objects_sync([item.key for item in items])
    except BaseException:
        objects_delete(items)
        raise


def objects_left_to_sweep(items: list[Planned]) -> None:
    """After the connection was lost while indexing: the index may have committed, or may
    still commit (a backend finishes its statement before it notices its client gone), so
    no object is deleted here; the orphan sweep removes those no row names, after its grace
    period."""
    left = sum(1 for item in items if item.key)
    if left:
        logger.warning("%d stored objects left to the orphan sweep (connection lost)", left)


def objects_delete(items: list[Planned]) -> None:
    for item in items:
        if item.key:
            storage.object_delete(key=item.key)
            item.key = ""


@dataclass
class _Tally:
    """What one batch adds to one study."""

    instances: int = 0
    series: int = 0
    modalities: set[str] = field(default_factory=set)


def index_batch(*, institution: Institution, items: list[Planned], cache: IndexCache) -> None:
    """Index stored objects in one transaction, joining the studies and series of ``cache``
    (rows looked up before) and creating the others.

    Raises IntegrityError when a row changed since it was looked up (a concurrent writer
    created the same study, series or instance): the caller indexes again from fresh rows.
    """
    studies = {
        uid: cache.studies[uid]
        for uid in {i.header.study_uid for i in items}
        if uid in cache.studies
    }
    series = {
        uid: cache.series[uid]
        for uid in {i.header.series_uid for i in items}
        if uid in cache.series
    }
    write = _index_in_one_statement if connection.vendor == "postgresql" else _index
    created_studies, created_series = write(
        institution=institution, items=items, studies=studies, series=series
    )
    # Committed: what the session knows now.
    for uid, tally in _tallies(items, new_series=set(created_series)).items():
        if uid in studies:
            studies[uid].modalities |= tally.modalities
    cache.studies |= created_studies
    cache.series |= created_series
    cache.indexed([item.header for item in items], created=created_studies)


@transaction.atomic
def _index(
    *,
    institution: Institution,
    items: list[Planned],
    studies: dict[str, StudyRow],
    series: dict[str, SeriesRow],
) -> tuple[dict[str, StudyRow], dict[str, SeriesRow]]:
    fresh = _fresh_series(items, series)
    tallies = _tallies(items, new_series=set(fresh))
    for row in sorted(studies.values(), key=lambda r: r.pk):  # a fixed lock order
        _study_count(row, tallies[row.study_uid])
    new_studies = _studies_create(
        institution=institution, items=items, tallies=tallies, known=studies
    )
    study_pks = {uid: row.pk for uid, row in (studies | new_studies).items()}
    counts = Counter(item.header.series_uid for item in items)
    for uid, row in sorted(series.items(), key=lambda kv: kv[1].pk):
        _series_count(row, count=counts[uid], study_pk=study_pks[_study_of(items, uid)])
    new_series = _series_create(fresh, study_pks=study_pks, counts=counts, institution=institution)
    instances = Instance.objects.bulk_create(
        [
            _instance(
                item,
                study_pk=study_pks[item.header.study_uid],
                series_pk=(series | new_series)[item.header.series_uid].pk,
            )
            for item in items
        ]
    )
    _queue_previews([i.pk for i in instances], items=items, series=series)
    return new_studies, new_series


def _index_in_one_statement(
    *,
    institution: Institution,
    items: list[Planned],
    studies: dict[str, StudyRow],
    series: dict[str, SeriesRow],
) -> tuple[dict[str, StudyRow], dict[str, SeriesRow]]:
    """_index on PostgreSQL: the same rows, written by one statement (ingest_sql)."""
    fresh = _fresh_series(items, series)
    tallies = _tallies(items, new_series=set(fresh))
    counts = Counter(item.header.series_uid for item in items)
    new_studies = _first_of_new_studies(items, known=studies)
    with _lock_races_retried(), _savepoint_when_nested():
        rows = ingest_sql.index_rows(
            bump_studies=_study_bumps(studies, tallies),
            new_studies=[
                _study(item, institution=institution, tally=tallies[uid])
                for uid, item in new_studies.items()
            ],
            bump_series=_series_bumps(series, items=items, studies=studies, counts=counts),
            new_series=[
                (item.header.study_uid, _series(item, count=counts[uid]))
                for uid, item in fresh.items()
            ],
            instances=[
                (item.header.study_uid, item.header.series_uid, _instance(item)) for item in items
            ],
        )
    created = {
        kind: {uid: (pk, study_pk) for k, pk, uid, study_pk in rows if k == kind} for kind in "sei"
    }
    study_rows = {
        uid: _study_row(item, pk=created["s"][uid][0], institution=institution, tally=tallies[uid])
        for uid, item in new_studies.items()
    }
    series_rows = {
        uid: SeriesRow(pk, study_pk, institution.pk, False)
        for uid, (pk, study_pk) in created["e"].items()
    }
    by_sop = created["i"]
    _queue_previews(
        [by_sop[item.header.sop_instance_uid][0] for item in items], items=items, series=series
    )
    return study_rows, series_rows


def _study_bumps(studies: dict[str, StudyRow], tallies: dict[str, _Tally]) -> list[dict]:
    """What the batch adds to each stored study; modalities only when it adds one."""
    return [
        {
            "id": row.pk,
            "instances": tallies[uid].instances,
            "series": tallies[uid].series,
            "modalities": ""
            if tallies[uid].modalities <= row.modalities
            else _joined(tallies[uid].modalities),
        }
        for uid, row in sorted(studies.items(), key=lambda kv: kv[1].pk)  # one lock order
    ]


def _series_bumps(
    series: dict[str, SeriesRow],
    *,
    items: list[Planned],
    studies: dict[str, StudyRow],
    counts: Counter,
) -> list[dict]:
    """What the batch adds to each stored series, with the stored study it must still
    belong to (None when its study is new: the series then belongs to another one)."""
    bumps = []
    for uid, row in sorted(series.items(), key=lambda kv: kv[1].pk):  # one lock order
        study = studies.get(_study_of(items, uid))
        bumps.append(
            {"id": row.pk, "study_id": study.pk if study else None, "instances": counts[uid]}
        )
    return bumps


@contextlib.contextmanager
def _lock_races_retried() -> Iterator[None]:
    """A deadlock with a concurrent writer of the same studies (PostgreSQL chose this
    statement as its victim, rolled back whole) is a lost race like any other: IntegrityError,
    and the caller indexes again, one object at a time, from fresh rows."""
    try:
        yield
    except OperationalError as exc:
        if not isinstance(exc.__cause__, psycopg.errors.DeadlockDetected):
            raise
        raise IntegrityError("A concurrent writer locked the same rows.") from exc


def _savepoint_when_nested():
    """Inside a caller's transaction, a savepoint keeps it usable after a failed statement;
    outside one, the statement is its own transaction (no BEGIN/COMMIT round trips)."""
    return transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()


def _fresh_series(items: list[Planned], series: dict[str, SeriesRow]) -> dict[str, Planned]:
    """The first object of each series to create."""
    fresh: dict[str, Planned] = {}
    for item in items:
        if item.header.series_uid not in series:
            fresh.setdefault(item.header.series_uid, item)
    return fresh


def _first_of_new_studies(items: list[Planned], *, known: dict) -> dict[str, Planned]:
    first: dict[str, Planned] = {}
    for item in items:
        if item.header.study_uid not in known:
            first.setdefault(item.header.study_uid, item)
    return first


def _study_of(items: list[Planned], series_uid: str) -> str:
    return next(i.header.study_uid for i in items if i.header.series_uid == series_uid)


def _tallies(items: list[Planned], *, new_series: set[str]) -> dict[str, _Tally]:
    tallies: dict[str, _Tally] = defaultdict(_Tally)
    seen = set()
    for item in items:
        header = item.header
        tally = tallies[header.study_uid]
        tally.instances += 1
        if header.modality:
            tally.modalities.add(header.modality)
        if header.series_uid in new_series and header.series_uid not in seen:
            seen.add(header.series_uid)
            tally.series += 1
    return tallies


def _joined(modalities: set[str]) -> str:
    return "\\".join(sorted(modalities))[:128]


def _study_count(row: StudyRow, tally: _Tally) -> None:
    changes = {
        "instance_count": F("instance_count") + tally.instances,
        "series_count": F("series_count") + tally.series,
        "updated_at": timezone.now(),
    }
    if not tally.modalities <= row.modalities:
        # Modalities only grow: read them under a lock only when this batch adds one.
        stored = Study.objects.select_for_update().filter(pk=row.pk).values_list("modalities")
        current = {m for m in (stored.first() or [""])[0].split("\\") if m}
        changes["modalities"] = _joined(current | tally.modalities)
    if Study.objects.filter(pk=row.pk).update(**changes) != 1:
        raise IntegrityError("The study is no longer indexed.")


def _series_count(row: SeriesRow, *, count: int, study_pk: int) -> None:
    if row.study_id != study_pk:
        raise IntegrityError("SeriesInstanceUID already belongs to another study.")
    if Series.objects.filter(pk=row.pk).update(instance_count=F("instance_count") + count) != 1:
        raise IntegrityError("The series is no longer indexed.")


def _studies_create(
    *,
    institution: Institution,
    items: list[Planned],
    tallies: dict[str, _Tally],
    known: dict[str, StudyRow],
) -> dict[str, StudyRow]:
    first = _first_of_new_studies(items, known=known)
    created = Study.objects.bulk_create(
        [_study(item, institution=institution, tally=tallies[uid]) for uid, item in first.items()]
    )
    return {
        s.study_uid: _study_row(
            first[s.study_uid], pk=s.pk, institution=institution, tally=tallies[s.study_uid]
        )
        for s in created
    }


def _study_row(item: Planned, *, pk: int, institution: Institution, tally: _Tally) -> StudyRow:
    """What the session knows of a study it created."""
    identity = item.identity or identity_of(performing=institution, header=item.header)
    patient_id = identity.patient.pk if identity.patient else None
    return StudyRow(
        pk,
        item.header.study_uid,
        institution.pk,
        item.header.patient_id,
        patient_id,
        set(tally.modalities),
    )


def _json(value: dict) -> Value:
    """A JSON column value as an expression: Django then inserts a batch with VALUES rows,
    not UNNEST of arrays, whose array literals escape each DICOM JSON document a second
    time (20 instances: 110 -> 42 ms on PostgreSQL)."""
    return Value(value, output_field=JSONField())


def _study(item: Planned, *, institution: Institution, tally: _Tally) -> Study:
    header = item.header
    identity = item.identity or identity_of(performing=institution, header=header)
    return Study(
        study_uid=header.study_uid,
        institution=institution,
        patient=identity.patient,
        dicom_patient_id=header.patient_id,
        issuer=header.issuer or institution.default_issuer,
        identifier_institution=identity.institution,
        study_date=header.study_date,
        study_time=header.study_time,
        accession_number=header.accession_number,
        description=header.study_description,
        modalities=_joined(tally.modalities),
        series_count=tally.series,
        instance_count=tally.instances,
        attributes=_json(header.study_attributes()),
    )


def _series_create(
    fresh: dict[str, Planned],
    *,
    study_pks: dict[str, int],
    counts: Counter,
    institution: Institution,
) -> dict[str, SeriesRow]:
    rows = []
    for uid, item in fresh.items():
        row = _series(item, count=counts[uid])
        row.study_id = study_pks[item.header.study_uid]
        rows.append(row)
    created = Series.objects.bulk_create(rows)
    return {s.series_uid: SeriesRow(s.pk, s.study_id, institution.pk, False) for s in created}


def _series(item: Planned, *, count: int) -> Series:
    """A new series row, without its study (not always indexed yet)."""
    header = item.header
    return Series(
        series_uid=header.series_uid,
        modality=header.modality,
        series_number=header.series_number,
        description=header.series_description,
        attributes=_json(header.series_attributes()),
        instance_count=count,
    )


def _instance(
    item: Planned, *, study_pk: int | None = None, series_pk: int | None = None
) -> Instance:
    """A new instance row; its study and series are joined by UID on PostgreSQL."""
    header = item.header
    return Instance(
        study_id=study_pk,
        series_id=series_pk,
        sop_instance_uid=header.sop_instance_uid,
        sop_class_uid=header.sop_class_uid,
        transfer_syntax_uid=header.transfer_syntax_uid,
        instance_number=header.instance_number,
        number_of_frames=header.number_of_frames,
        storage_key=item.key,
        size=item.spooled.size,
        sha256=item.spooled.sha256,
        pixel_data_offset=header.pixel_data_offset,
        pixel_data_length=header.pixel_data_length,
        metadata=_json(header.metadata),
    )


def _queue_previews(
    instance_pks: list[int], *, items: list[Planned], series: dict[str, SeriesRow]
) -> None:
    """One preview per series that has none yet, made once the batch is committed."""
    first: dict[str, int] = {}
    for pk, item in zip(instance_pks, items, strict=True):
        uid = item.header.series_uid
        has_preview = uid in series and series[uid].has_preview
        if item.header.number_of_frames and not has_preview:
            first.setdefault(uid, pk)
    for instance_id in first.values():
        transaction.on_commit(lambda pk=instance_id: _after_store(instance_id=pk))


# After a preview could not be queued, none is tried for this long: each attempt on a broker
# that is down holds the store path for about 0.6 s (kombu's connection attempts), and a
# C-STORE sender waits for it.
BROKER_RETRY_AFTER = 30.0
_previews_paused_until = 0.0


def _after_store(*, instance_id: int) -> None:
    global _previews_paused_until
    from studies import tasks  # tasks render images: imported when needed

    # Only a worker makes previews: run inline (no broker), decoding an image would sit on
    # the store path and halve the ingest rate, for a thumbnail the portal does not need
    # (its pages use /rendered).
    if tasks.series_preview.app.conf.task_always_eager:
        return
    if time.monotonic() < _previews_paused_until:
        return
    try:
        tasks.series_preview.delay(instance_id)
    except Exception:
        # The instance is committed: raising here would make ingest delete its object
        # under a committed row and refuse what is stored. The series' next instance stored
        # once the broker is back queues its preview, or else beat's previews_due does.
        _previews_paused_until = time.monotonic() + BROKER_RETRY_AFTER
        logger.exception("Preview of instance %s not queued (is the broker down?)", instance_id)
