"""The series viewer in a real browser: keys, wheel and slider step through the images."""

import pytest

from tests.browser.conftest import screenshot
from tests.browser.steps import log_in
from tests.conftest import XAVIER_ID
from tests.portal.conftest import admit, consent_to_all

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOWN = "img => img.complete && img.naturalWidth > 0"


def shown_image(page) -> str:
    """The viewer's image once it has loaded, by its URL."""
    image = page.locator("#viewer-image")
    page.wait_for_function(SHOWN, arg=image.element_handle())
    return image.get_attribute("src")


def test_a_practitioner_steps_through_a_series(cast, xavier_ct_series, live_server, page):
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    study, _series, sops = xavier_ct_series
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/patients/{XAVIER_ID}/studies/{study}/")
    page.get_by_role("link", name="Open series").click()

    count = page.locator("#viewer-count")
    assert count.inner_text() == "Image 1 of 3"
    assert f"/instances/{sops[0]}/" in shown_image(page)
    screenshot(page, "16-practitioner-series-viewer")

    page.keyboard.press("ArrowRight")
    assert count.inner_text() == "Image 2 of 3"
    assert f"/instances/{sops[1]}/" in shown_image(page)
    assert page.url.endswith("?image=2")  # a reload or a shared link opens the same image

    page.keyboard.press("End")
    assert count.inner_text() == "Image 3 of 3"
    assert f"/instances/{sops[2]}/" in shown_image(page)
    page.keyboard.press("ArrowRight")  # no further than the last
    assert count.inner_text() == "Image 3 of 3"

    page.locator("#viewer-image").hover()
    page.mouse.wheel(0, -100)
    assert count.inner_text() == "Image 2 of 3"

    page.get_by_role("link", name="Lung").click()
    assert "window=-600,1500" in shown_image(page)
    assert count.inner_text() == "Image 2 of 3"  # the preset keeps the image


def test_without_script_the_links_step_through_the_series(
    cast, xavier_ct_series, live_server, browser
):
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    study, series, sops = xavier_ct_series
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        log_in(page, live_server.url, "alice")
        page.goto(f"{live_server.url}/patients/{XAVIER_ID}/studies/{study}/series/{series}/")
        page.get_by_role("link", name="Next →").click()
        assert page.locator("#viewer-count").inner_text() == "Image 2 of 3"
        assert f"/instances/{sops[1]}/" in page.locator("#viewer-image").get_attribute("src")
    finally:
        context.close()


def test_the_viewer_leaves_keys_with_a_modifier_and_keeps_its_links(
    cast, xavier_ct_series, live_server, page
):
    consent_to_all(cast.xavier)
    admit(cast.alice, cast.xavier)
    study, series, _ = xavier_ct_series
    log_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/patients/{XAVIER_ID}/studies/{study}/series/{series}/")
    count = page.locator("#viewer-count")
    page.keyboard.press("Alt+ArrowRight")  # the browser's Forward, not the next image
    assert count.inner_text() == "Image 1 of 3"
    previous = page.get_by_role("link", name="← Previous")
    assert previous.get_attribute("aria-disabled") == "true"  # a link all the same
    page.get_by_role("link", name="Next →").click()
    assert count.inner_text() == "Image 2 of 3"
    assert previous.get_attribute("aria-disabled") == "false"
    previous.focus()  # reachable from the keyboard, as a screen reader lists it
    page.keyboard.press("Enter")
    assert count.inner_text() == "Image 1 of 3"
