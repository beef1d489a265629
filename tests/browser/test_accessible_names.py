"""What a screen reader announces for a control that acts on one row of a table."""

import re

import pytest
from playwright.sync_api import expect

from tests.browser.steps import log_in
from tests.conftest import XAVIER_ID
from tests.portal.conftest import admit, consent_to_all

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_open_link_names_the_study_it_opens(cast, xavier_studies, live_server, page):
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    log_in(page, live_server.url, "alice", "CHL")
    page.goto(f"{live_server.url}/patients/{XAVIER_ID}/")
    link = page.get_by_role("row").filter(has_text="CT thorax").get_by_role("link")
    expect(link).to_have_accessible_name(
        re.compile(r"^Open study of \d{1,2} \w{3} \d{4}: CT thorax$")
    )
