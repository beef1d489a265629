"""The 13-digit national identifier: valid, and each kind of invalid."""

import datetime

import pytest
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength

from consent import national_id

VALID = national_id.make(datetime.date(1983, 1, 1), 1)


def test_it_accepts_a_valid_identifier() -> None:
    assert VALID == "1983010100159"
    assert national_id.validate(VALID) == VALID


def test_it_accepts_spaces_and_dashes_around_digits() -> None:
    assert national_id.validate("1983 0101 001-59") == VALID


def test_it_reads_the_birth_date() -> None:
    assert national_id.birth_date(VALID) == datetime.date(1983, 1, 1)


@pytest.mark.parametrize(
    ("number", "error", "words"),
    [
        ("198301010015", InvalidLength, "13 digits"),
        ("19830101001590", InvalidLength, "13 digits"),
        ("19830101001A9", InvalidFormat, "only digits"),
        ("1983130100159", InvalidComponent, "birth date"),
        ("1983023000159", InvalidComponent, "birth date"),
        ("1983010100169", InvalidChecksum, "Luhn"),
        ("1983010100158", InvalidChecksum, "Verhoeff"),
    ],
)
def test_it_refuses_each_kind_of_invalid_identifier(number: str, error: type, words: str) -> None:
    with pytest.raises(error, match=words):
        national_id.validate(number)


def test_both_check_digits_cover_the_first_eleven_digits() -> None:
    # A change in the sequence must change at least one check digit.
    other = national_id.make(datetime.date(1983, 1, 1), 2)
    assert other[:11] != VALID[:11]
    assert national_id.is_valid(other)
    assert not national_id.is_valid(other[:11] + VALID[11:])
