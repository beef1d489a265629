"""A keyboard user can reach every control of a form page and always sees where the focus is."""

import pytest

from tests.browser.steps import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FOCUSED = """() => {
  const el = document.activeElement, style = getComputedStyle(el);
  return {tag: el.tagName, name: el.name || el.textContent.trim().slice(0, 40),
          style: style.outlineStyle, width: parseFloat(style.outlineWidth),
          color: style.outlineColor};
}"""


def luminance(rgb: str) -> float:
    """Relative luminance of a CSS rgb() colour (WCAG 2.1)."""
    channels = [int(part) / 255 for part in rgb[rgb.index("(") + 1 : -1].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_with_white(rgb: str) -> float:
    return 1.05 / (luminance(rgb) + 0.05)


def test_every_control_of_the_consent_page_shows_a_visible_focus(cast, live_server, page):
    log_in(page, live_server.url, "yvonne")
    page.goto(f"{live_server.url}/me/consents/")
    seen = []
    for _ in range(40):  # a date field takes one Tab per part (day, month, year)
        page.keyboard.press("Tab")
        focused = page.evaluate(FOCUSED)
        if focused["tag"] == "BODY":
            break
        seen.append(focused)
        label = f"{focused['tag']} {focused['name']}"
        assert focused["style"] != "none", label
        assert focused["width"] >= 2, label
        assert contrast_with_white(focused["color"]) >= 3, label
    reached = {f["name"] for f in seen}
    assert {"scope", "valid_until", "allow_emergency", "Grant consent"} <= reached
