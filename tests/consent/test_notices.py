"""Patient notices are never lost: a row records each, and a sweep sends what is still due."""

import datetime
import importlib
import smtplib
import threading

import pytest
from django.apps import apps
from django.core import mail
from django.core.mail.backends.locmem import EmailBackend as LocmemBackend
from django.db import connection
from django.utils import timezone

from consent.models import Consent, EmergencyAccess, Institution
from consent.services import notices
from consent.services.notices import emergency_notice_send
from consent.tasks import expire_due, notify_due
from tests.conftest import client_for, require_postgres

from .conftest import consent_for
from .test_api_care_emergency import API, declare

HOUR = datetime.timedelta(hours=1)
FAILING = "tests.consent.test_notices.FailingBackend"


class FailingBackend(LocmemBackend):
    """A mail server that hangs up on every message."""

    calls = 0

    def send_messages(self, messages):
        FailingBackend.calls += 1
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


@pytest.fixture
def xavier(cast):
    cast.xavier.user.email = "xavier@example.org"
    cast.xavier.user.save()
    return cast.xavier


@pytest.fixture
def broker_down(monkeypatch, caplog):
    """Tasks go to a broker on a closed port (Redis down), as in production with a broker."""
    from anim_gateway.celery import app

    eager, broker_url = app.conf.task_always_eager, app.conf.broker_url
    app.conf.task_always_eager = False
    app.conf.broker_url = "redis://127.0.0.1:1/0"
    # Celery's own settings prefer this variable to broker_url (CI sets it to a live Redis).
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/0")
    # The app keeps its connection pools: new ones are made for the closed port.
    monkeypatch.setattr(app, "_pool", None)
    monkeypatch.setattr(app.amqp, "_producer_pool", None)
    yield caplog
    app.conf.task_always_eager, app.conf.broker_url = eager, broker_url


def declared(django_capture_on_commit_callbacks) -> EmergencyAccess:
    with django_capture_on_commit_callbacks(execute=True):
        response = declare(client_for("bob", "CHEM"))
    assert response.status_code == 201, response.json()
    return EmergencyAccess.objects.get(pk=response.json()["id"])


def grace_passes(access: EmergencyAccess, settings) -> None:
    EmergencyAccess.objects.filter(pk=access.pk).update(
        start=access.start - datetime.timedelta(seconds=settings.PATIENT_NOTICE_GRACE_SECONDS + 1)
    )


def dpo_view(access: EmergencyAccess) -> dict:
    rows = client_for("dora").get(f"{API}/emergency-accesses/?review=pending").json()
    return next(row for row in rows if row["id"] == access.pk)


def test_the_notice_is_sent_once_and_recorded(xavier, django_capture_on_commit_callbacks):
    access = declared(django_capture_on_commit_callbacks)
    assert len(mail.outbox) == 1
    assert "Xavier" not in mail.outbox[0].body
    row = dpo_view(access)
    assert row["patient_notice"] == "sent"
    assert row["patient_notified_at"] is not None
    assert emergency_notice_send(access_id=access.pk) is None
    assert len(mail.outbox) == 1


def test_a_notice_the_broker_lost_is_sent_by_the_sweep_once(
    xavier, broker_down, settings, django_capture_on_commit_callbacks
):
    access = declared(django_capture_on_commit_callbacks)
    assert mail.outbox == []
    assert "in on_commit()" in broker_down.text  # the failed queueing was logged
    assert (dpo_view(access)["patient_notice"], dpo_view(access)["patient_notified_at"]) == (
        "",
        None,
    )
    assert notify_due() == 0  # within the grace, the queued task may still come
    grace_passes(access, settings)
    assert notify_due() == 1
    assert notify_due() == 0
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["xavier@example.org"]
    assert "Dr Bob Becker at CHEM" in mail.outbox[0].body
    assert dpo_view(access)["patient_notice"] == "sent"
    assert "Xavier" not in broker_down.text


def test_a_notice_the_mail_backend_failed_stays_due_until_sent(
    xavier, settings, caplog, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = FAILING
    access = declared(django_capture_on_commit_callbacks)
    grace_passes(access, settings)
    assert notify_due() == 0
    access.refresh_from_db()
    assert (access.patient_notified_at, access.patient_notice) == (None, "")
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert notify_due() == 1
    assert notify_due() == 0
    assert len(mail.outbox) == 1
    assert "Xavier" not in caplog.text


def test_a_sweep_stops_when_the_mail_backend_is_down(xavier, cast, settings):
    start = timezone.now() - HOUR
    for _ in range(5):
        EmergencyAccess.objects.create(
            practitioner=cast.bob,
            institution=Institution.objects.get(code="CHEM"),
            patient=xavier,
            reason="x" * 30,
            start=start,
            expires_at=start + 4 * HOUR,
        )
    settings.EMAIL_BACKEND = FAILING
    FailingBackend.calls = 0
    assert notify_due() == 0
    assert FailingBackend.calls == 3
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert notify_due() == 5
    assert len(mail.outbox) == 5


def test_a_patient_without_an_address_is_recorded_as_such(
    cast, settings, django_capture_on_commit_callbacks
):
    access = declared(django_capture_on_commit_callbacks)
    assert mail.outbox == []
    row = dpo_view(access)
    assert row["patient_notice"] == "no_address"
    assert row["patient_notified_at"] is not None
    grace_passes(access, settings)
    assert notify_due() == 0


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_send_one_message(xavier, cast, settings):
    """While one worker is handing the message over, another skips the notice."""
    require_postgres()
    settings.EMAIL_BACKEND = "tests.consent.test_notices.SlowBackend"
    access = EmergencyAccess.objects.create(
        practitioner=cast.bob,
        institution=Institution.objects.get(code="CHEM"),
        patient=xavier,
        reason="x" * 30,
        expires_at=timezone.now() + HOUR,
    )
    results = []

    def first_worker():
        try:
            results.append(emergency_notice_send(access_id=access.pk))
        finally:
            connection.close()

    worker = threading.Thread(target=first_worker)
    worker.start()
    assert SlowBackend.sending.wait(10)
    second = emergency_notice_send(access_id=access.pk)
    SlowBackend.release.set()
    worker.join(10)
    assert (results, second) == (["sent"], None)
    assert len(mail.outbox) == 1


class SlowBackend(LocmemBackend):
    """A mail server that answers only when the test lets it."""

    sending = threading.Event()
    release = threading.Event()

    def send_messages(self, messages):
        SlowBackend.sending.set()
        SlowBackend.release.wait(10)
        return super().send_messages(messages)


@pytest.fixture
def expired(xavier, cast):
    now = timezone.now()
    consent = consent_for(xavier, valid_from=now - 3 * HOUR, valid_until=now - HOUR)
    access = EmergencyAccess.objects.create(
        practitioner=cast.bob,
        institution=Institution.objects.get(code="CHEM"),
        patient=xavier,
        reason="x" * 30,
        start=now - 5 * HOUR,
        expires_at=now - HOUR,
        patient_notified_at=now - 5 * HOUR,
        patient_notice="sent",
    )
    return consent, access


def test_expiry_notices_the_mail_backend_failed_go_with_the_next_run(expired, settings):
    settings.EMAIL_BACKEND = FAILING
    assert expire_due() == {"consent": 1, "care_relationship": 0, "emergency_access": 1}
    for row in expired:
        row.refresh_from_db()
        assert row.expiry_recorded_at is not None
        assert row.expiry_notified_at is None
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert expire_due() == {"consent": 0, "care_relationship": 0, "emergency_access": 0}
    assert sorted(m.subject for m in mail.outbox) == [
        "Emergency access ended",
        "Your consent has expired",
    ]
    expire_due()
    assert len(mail.outbox) == 2


def test_the_migration_counts_earlier_rows_as_notified(expired):
    consent, access = expired
    EmergencyAccess.objects.filter(pk=access.pk).update(
        patient_notified_at=None, patient_notice="", expiry_recorded_at=access.expires_at
    )
    Consent.objects.filter(pk=consent.pk).update(expiry_recorded_at=consent.valid_until)
    importlib.import_module("consent.migrations.0005_patient_notices_backfill").backfill(apps, None)
    access.refresh_from_db()
    consent.refresh_from_db()
    assert (access.patient_notified_at, access.patient_notice) == (access.start, "unrecorded")
    assert access.expiry_notified_at == access.expires_at
    assert consent.expiry_notified_at == consent.valid_until


class RefusingBackend(LocmemBackend):
    """A mail server that refuses one mistyped address and delivers the others."""

    def send_messages(self, messages):
        for message in messages:
            if "mistyped" in message.to[0]:
                raise smtplib.SMTPRecipientsRefused({message.to[0]: (550, b"No such user")})
        return super().send_messages(messages)


def emergency_for(patient, cast, start) -> EmergencyAccess:
    return EmergencyAccess.objects.create(
        practitioner=cast.bob,
        institution=Institution.objects.get(code="CHEM"),
        patient=patient,
        reason="x" * 30,
        start=start,
        expires_at=start + 4 * HOUR,
    )


def test_an_undeliverable_notice_neither_blocks_the_others_nor_stays_due(
    xavier, cast, settings, caplog
):
    cast.yvonne.user.email = "yvonne.mistyped@example.org"
    cast.yvonne.user.save()
    start = timezone.now() - 2 * HOUR
    poisoned = [emergency_for(cast.yvonne, cast, start) for _ in range(4)]
    good = [emergency_for(xavier, cast, start + HOUR) for _ in range(2)]
    settings.EMAIL_BACKEND = "tests.consent.test_notices.RefusingBackend"
    assert notify_due() == 2  # behind four refused notices
    assert [m.to for m in mail.outbox] == [["xavier@example.org"]] * 2
    for access in good:
        assert dpo_view(access)["patient_notice"] == "sent"
    assert notify_due() == 0  # the refused ones wait their backoff
    for sweep in range(2, notices.MAX_ATTEMPTS + 1):
        assert dpo_view(poisoned[0])["patient_notice"] == ""
        EmergencyAccess.objects.filter(pk__in=[a.pk for a in poisoned]).update(
            patient_notice_next_attempt_at=timezone.now()  # the backoff has passed
        )
        assert notify_due() == (4 if sweep == notices.MAX_ATTEMPTS else 0)
    row = dpo_view(poisoned[0])
    assert row["patient_notice"] == "failed"
    assert row["patient_notified_at"] is not None
    assert notify_due() == 0
    assert len(mail.outbox) == 2
    assert "could not be delivered" in caplog.text
    assert [r.levelname for r in caplog.records if "could not be" in r.message] == ["ERROR"] * 4
    assert "mistyped" not in caplog.text
    assert "Yvonne" not in caplog.text


@pytest.mark.django_db(transaction=True)
def test_the_message_is_sent_outside_any_transaction(xavier, cast, settings):
    """A slow mail server holds no row lock (on SQLite: no database lock)."""
    settings.EMAIL_BACKEND = "tests.consent.test_notices.TransactionSpy"
    TransactionSpy.in_transaction = []
    access = emergency_for(xavier, cast, timezone.now())
    assert emergency_notice_send(access_id=access.pk) == "sent"
    assert TransactionSpy.in_transaction == [False]


class TransactionSpy(LocmemBackend):
    in_transaction: list[bool] = []

    def send_messages(self, messages):
        TransactionSpy.in_transaction.append(connection.in_atomic_block)
        return super().send_messages(messages)


def test_the_ended_notice_waits_for_the_declared_one(
    xavier, broker_down, settings, django_capture_on_commit_callbacks
):
    access = declared(django_capture_on_commit_callbacks)  # its notice lost with the broker
    EmergencyAccess.objects.filter(pk=access.pk).update(
        start=timezone.now() - 5 * HOUR, expires_at=timezone.now() - HOUR
    )
    assert expire_due()["emergency_access"] == 1
    assert mail.outbox == []  # not "ended" before "declared"
    assert notify_due() == 1
    expire_due()
    assert [m.subject for m in mail.outbox] == [
        "Emergency access to your images",
        "Emergency access ended",
    ]


def test_an_old_release_can_still_insert_an_emergency_access(xavier, cast):
    """Rolling deploy: a web process without the notice columns inserts after migrate."""
    new = {
        "patient_notified_at",
        "patient_notice",
        "patient_notice_attempts",
        "patient_notice_next_attempt_at",
        "expiry_notified_at",
        "expiry_notice_attempts",
        "expiry_notice_next_attempt_at",
    }
    access = EmergencyAccess(
        practitioner=cast.bob,
        institution=Institution.objects.get(code="CHEM"),
        patient=xavier,
        reason="x" * 30,
        expires_at=timezone.now() + HOUR,
    )
    fields = [
        f for f in EmergencyAccess._meta.concrete_fields if not f.primary_key and f.name not in new
    ]
    values = [f.get_db_prep_save(f.pre_save(access, True), connection) for f in fields]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    table = connection.ops.quote_name(EmergencyAccess._meta.db_table)
    # The names come from the model, the values are parameters.
    insert = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * len(values))})"  # noqa: S608
    with connection.cursor() as cursor:
        cursor.execute(insert, values)
    row = EmergencyAccess.objects.get(patient=xavier)
    assert (row.patient_notice, row.patient_notice_attempts) == ("", 0)
    assert notify_due() == 0  # within the grace: the new workers send it


def test_a_worker_whose_lease_ran_out_changes_nothing(xavier, cast, settings):
    """Worker A's send outlasts its lease; B takes the notice and tells the patient. A's
    refusal, coming last, must not record the notice as failed (nor release B's lease)."""
    access = emergency_for(xavier, cast, timezone.now() - HOUR)
    kind = notices.EMERGENCY_DECLARED
    row, lease = notices._claim(kind, access.pk)
    EmergencyAccess.objects.filter(pk=access.pk).update(
        patient_notice_next_attempt_at=timezone.now() - HOUR  # A's lease ran out
    )
    assert emergency_notice_send(access_id=access.pk) == "sent"  # B
    refusal = smtplib.SMTPRecipientsRefused({"x": (550, b"No such user")})
    row.patient_notice_attempts = notices.MAX_ATTEMPTS  # A's last attempt
    assert notices._refused(kind, row, lease, refusal) is None
    assert dpo_view(access)["patient_notice"] == "sent"


class BusyBackend(LocmemBackend):
    """A relay whose queue is full: 451, try again later."""

    def send_messages(self, messages):
        raise smtplib.SMTPDataError(451, b"Queue full, try later")


def test_a_busy_mail_server_does_not_use_up_a_notices_attempts(xavier, cast, settings):
    access = emergency_for(xavier, cast, timezone.now() - HOUR)
    settings.EMAIL_BACKEND = "tests.consent.test_notices.BusyBackend"
    for _ in range(notices.MAX_ATTEMPTS + 1):
        EmergencyAccess.objects.filter(pk=access.pk).update(patient_notice_next_attempt_at=None)
        notify_due()
    access.refresh_from_db()
    assert access.patient_notice == ""  # still due: sent once the relay has room
    assert access.patient_notice_attempts == 0
