"""The 13-digit Luxembourg national identifier (matricule): YYYYMMDD, sequence, Luhn, Verhoeff."""

import datetime

from stdnum import luhn, verhoeff
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.util import clean, isdigits


def compact(number: str) -> str:
    return clean(number, " -.").strip()


def validate(number: str) -> str:
    """Return the compact identifier, or raise a stdnum ValidationError saying what is wrong.

    Both check digits are computed over the first 11 digits (birth date and sequence).
    """
    number = compact(number)
    if not isdigits(number):
        raise InvalidFormat("The national identifier must contain only digits.")
    if len(number) != 13:
        raise InvalidLength("The national identifier must have 13 digits.")
    try:
        datetime.date(int(number[0:4]), int(number[4:6]), int(number[6:8]))
    except ValueError as exc:
        raise InvalidComponent("The first 8 digits are not a valid birth date (YYYYMMDD).") from exc
    if luhn.calc_check_digit(number[:11]) != number[11]:
        raise InvalidChecksum("The 12th digit (Luhn check digit) does not match.")
    if verhoeff.calc_check_digit(number[:11]) != number[12]:
        raise InvalidChecksum("The 13th digit (Verhoeff check digit) does not match.")
    return number


def is_valid(number: str) -> bool:
    try:
        return bool(validate(number))
    except StdnumError:
        return False


def birth_date(number: str) -> datetime.date:
    number = validate(number)
    return datetime.date(int(number[0:4]), int(number[4:6]), int(number[6:8]))


def make(birth: datetime.date, sequence: int) -> str:
    """Build a valid identifier (for demo data and tests)."""
    head = f"{birth:%Y%m%d}{sequence:03d}"
    return head + luhn.calc_check_digit(head) + verhoeff.calc_check_digit(head)
