"""Dates and times: one format, machine-readable, in a time zone the page names."""

import datetime
import re

import pytest
from django.utils import timezone

from audit.events import Event
from audit.models import AuditEvent
from audit.services import append
from consent.models import Consent, EmergencyAccess, Institution
from tests.conftest import XAVIER_ID

pytestmark = pytest.mark.django_db


def local(hour: int, day: int = 16) -> datetime.datetime:
    """A moment on a summer day in Luxembourg (UTC+2), stored in UTC by the database."""
    return timezone.make_aware(datetime.datetime(2024, 5, day, hour, 0, 7))


def time_elements(html: str) -> list[tuple[str, str]]:
    return re.findall(r'<time datetime="([^"]+)">([^<]+)</time>', html)


def test_the_access_log_says_when_in_luxembourg_time(portal_as, cast):
    append(Event(action="patient.studies_list", outcome="permit", patient=XAVIER_ID))
    event = AuditEvent.objects.filter(patient=XAVIER_ID).latest("seq")
    html = portal_as("xavier").get("/me/access-log/").content.decode()
    assert '<th scope="col">When (Luxembourg time)</th>' in html
    when = timezone.localtime(event.time)
    assert (f"{when:%Y-%m-%dT%H:%M:%S%z}", f"{when.day} {when:%b %Y, %H:%M}") in time_elements(html)


def test_the_dpo_reads_the_same_format_with_seconds(portal_as, cast):
    dora = portal_as("dora")
    # The events before the page: its own reading of the log is appended after it is built
    # (a second later, now and then, which no time on the page shows).
    shown_events = list(AuditEvent.objects.all())
    html = dora.get("/dpo/audit/").content.decode()
    assert '<th scope="col">When (Luxembourg time)</th>' in html
    for event in shown_events:
        when = timezone.localtime(event.time)
        shown = f"{when.day} {when:%b %Y, %H:%M:%S}"
        assert (f"{when:%Y-%m-%dT%H:%M:%S%z}", shown) in time_elements(html)
    assert not re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", html)  # no second format left


def emergency(cast, start: datetime.datetime, hours: int) -> EmergencyAccess:
    return EmergencyAccess.objects.create(
        practitioner=cast.bob,
        institution=Institution.objects.get(code="CHEM"),
        patient=cast.xavier,
        reason="Unconscious after a road accident, brought to our ER.",
        start=start,
        expires_at=start + datetime.timedelta(hours=hours),
    )


def test_an_emergency_ending_the_next_day_names_that_day(portal_as, cast):
    emergency(cast, local(23), hours=4)
    emergency(cast, local(9, day=20), hours=4)
    html = portal_as("dora").get("/dpo/emergencies/").content.decode()
    assert "Times are Luxembourg time." in html
    times = time_elements(html)
    # 23:00 on the 16th to 03:00 on the 17th; 09:00 to 13:00 on the 20th.
    assert ("2024-05-16T23:00:07+0200", "16 May 2024, 23:00") in times
    assert ("2024-05-17T03:00:07+0200", "17 May 2024, 03:00") in times
    assert ("2024-05-20T09:00:07+0200", "20 May 2024, 09:00") in times
    assert ("2024-05-20T13:00:07+0200", "13:00") in times


def test_patient_dates_are_machine_readable_days(portal_as, cast):
    until = timezone.make_aware(datetime.datetime(2031, 1, 1))  # excluded: midnight starting it
    Consent.objects.create(patient=cast.xavier, all_members=True, granted_by="x", valid_until=until)
    html = portal_as("xavier").get("/me/consents/").content.decode()
    assert ("2030-12-31", "31 Dec 2030") in time_elements(html)  # the last day chosen
