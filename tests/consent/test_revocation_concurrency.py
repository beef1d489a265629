"""Revocation holds from the next request: 16 concurrent readers while the patient revokes."""

import threading
import time

import pytest
from django.db import connection

from consent import gate
from consent.gate import AccessDenied
from tests.conftest import Cast, client_for, require_postgres

from .conftest import actor, care, consent_for, study

READERS = 16


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the readers made no progress"
        time.sleep(0.05)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_request_starting_after_the_revocation_commits_is_permitted():
    require_postgres()
    cast = Cast()
    consent = consent_for(cast.xavier)
    care(cast.alice, cast.xavier)
    alice = actor(cast.alice.user, "CHL")
    chem_study = study("1.2.826.0.1.3680043.8.498.77", "CHEM", cast.xavier)
    xavier_client = client_for("xavier")
    committed = threading.Event()
    stop = threading.Event()
    ready = threading.Barrier(READERS + 1)
    results: list[tuple[bool, bool]] = []
    codes: set[str] = set()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def reader() -> None:
        try:
            ready.wait()
            while not stop.is_set():
                after = committed.is_set()  # read before the request starts
                try:
                    gate.authorize(
                        alice,
                        gate.VIEW_IMAGES,
                        patient=cast.xavier,
                        study=chem_study,
                        audit_action="study.retrieve",
                    )
                    permitted, code = True, ""
                except AccessDenied as exc:
                    permitted, code = False, exc.code
                with lock:
                    results.append((after, permitted))
                    codes.add(code)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=reader) for _ in range(READERS)]
    for thread in threads:
        thread.start()
    ready.wait()
    try:
        # A busy machine may be slow to start 16 connections: wait for reads, not for a time.
        wait_for(lambda: len(results) >= 2 * READERS)
        response = xavier_client.post(f"/api/v1/me/consents/{consent.pk}/revoke/")
        committed.set()  # the response is sent after the revocation committed
        wait_for(lambda: sum(after for after, _ in results) >= 2 * READERS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)

    assert response.status_code == 200
    assert not errors, errors
    assert codes <= {"", "NO_CONSENT"}
    before = [permitted for after, permitted in results if not after]
    after = [permitted for after, permitted in results if after]
    assert any(before), "no permitted reads before the revocation: the test proves nothing"
    assert len(after) >= READERS
    assert not any(after), f"{sum(after)} reads permitted after the revocation committed"
