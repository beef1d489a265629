"""List endpoints cost the same number of queries for one row or many (no N+1)."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.conftest import client_for

from .conftest import care, consent_for, exclude

API = "/api/v1"


def queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as context:
        assert client.get(url).status_code == 200
    return len(context.captured_queries)


def test_the_patients_lists_do_not_grow_with_their_rows(cast):
    xavier = client_for("xavier")
    consent_for(cast.xavier, ["CHL"])
    care(cast.alice, cast.xavier)
    exclude(cast.xavier, cast.bob)
    urls = ["/me/consents/", "/me/care-relationships/", "/me/exclusions/", "/me/who-can-see/"]
    one = {url: queries(xavier, f"{API}{url}") for url in urls}
    for _ in range(4):
        consent_for(cast.xavier, ["CHL", "HRS"])
        care(cast.charlie, cast.xavier)
        care(cast.bob, cast.xavier)
    exclude(cast.xavier, cast.charlie)
    many = {url: queries(xavier, f"{API}{url}") for url in urls}
    assert many == one


def test_the_dpo_queue_does_not_grow_with_its_rows(cast):
    reason = {"reason": "Unconscious patient, prior imaging needed now."}
    bob = client_for("bob", "CHEM")
    bob.post(f"{API}/patients/{cast.xavier.national_id}/emergency-access/", reason, format="json")
    dora = client_for("dora")
    one = queries(dora, f"{API}/emergency-accesses/?review=pending")
    for patient in (cast.xavier, cast.yvonne, cast.yvonne):
        bob.post(f"{API}/patients/{patient.national_id}/emergency-access/", reason, format="json")
    assert queries(dora, f"{API}/emergency-accesses/?review=pending") == one
