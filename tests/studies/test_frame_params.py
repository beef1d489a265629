"""Frame lists and windows from the URL: bounded and finite, or a 400 naming the parameter."""

import pytest

from anim_gateway.errors import ApplicationError
from studies.api.frames import frame_numbers
from studies.api.rendered import _window


def test_a_repeated_frame_is_served_once() -> None:
    assert frame_numbers("2,1,2,2,1", count=3) == [2, 1]
    assert frame_numbers(",".join(["1"] * 5000), count=1) == [1]


@pytest.mark.parametrize("raw", ["nan,400", "40,inf", "-inf,1"])
def test_a_window_must_be_finite(raw: str) -> None:
    with pytest.raises(ApplicationError, match="window: center and width must be finite"):
        _window(raw)


def test_a_sane_window_is_read() -> None:
    assert _window("40,400") == (40.0, 400.0)


@pytest.mark.parametrize("raw", ["-1.7e308,1.7e308", "0,5e-324", "2e15,400", "40,1e-7", "40,2e15"])
def test_a_window_the_arithmetic_cannot_carry_is_refused(raw: str) -> None:
    """An infinite scale or bound would render a meaningless image (and numpy warnings)."""
    with pytest.raises(ApplicationError, match="window: the center within"):
        _window(raw)


def test_the_widest_and_narrowest_windows_are_read() -> None:
    assert _window("-1e15,1e15") == (-1e15, 1e15)
    assert _window("0.5,0.000001") == (0.5, 1e-6)


@pytest.mark.parametrize("raw", ["", ",", " ", "1_0", "+1", " 1", "\u0661", "1,x"])
def test_a_frame_list_is_whole_numbers_in_ascii_digits_and_commas(raw: str) -> None:
    with pytest.raises(ApplicationError, match="frames: a comma-separated list of frame numbers"):
        frame_numbers(raw, count=20)


def test_empty_items_of_a_frame_list_are_skipped() -> None:
    assert frame_numbers("1,,2,", count=20) == [1, 2]


@pytest.mark.parametrize("raw", ["\u0661\u0662,\u0661\u0662", "5_0,50", "+5,5"])
def test_a_viewport_is_whole_numbers_in_ascii_digits(raw: str) -> None:
    from studies.api.rendered import viewport_param

    with pytest.raises(ApplicationError, match="viewport: vw,vh with whole numbers"):
        viewport_param(raw)


@pytest.mark.parametrize("name", ["limit", "offset"])
@pytest.mark.parametrize("raw", ["\u0661\u0662", "1_0", "+1", " 5"])
def test_limit_and_offset_are_ascii_digits(name: str, raw: str) -> None:
    from django.http import QueryDict

    from studies import qido

    with pytest.raises(ApplicationError, match=f"{name}: must be an integer"):
        qido.parse_query(QueryDict(f"{name}={raw}".encode()), "studies")
