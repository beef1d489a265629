"""Options that several commands take, checked before anything runs: CommandError naming them."""

from django.core.management.base import CommandError

from anim_gateway.dicom_ae import ae_title_problem


def number_or_text(value: str) -> int | str:
    """argparse's type for a number checked in handle(): a number when it is one, the text
    otherwise, which handle() refuses as a CommandError (argparse's refusal exits 2)."""
    text = value.strip()
    return int(text) if text.isascii() and text.isdigit() else value


def port_option(option: str, value: str | int) -> int:
    """A TCP port from 1 to 65535 (0 would listen on a port the system picks)."""
    text = str(value).strip()
    number = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= number <= 65535:
        raise CommandError(f"{option} must be a port number from 1 to 65535, not {str(value)!r}.")
    return number


def ae_title_option(option: str, value: str) -> str:
    """A DICOM AE title, as the listener announces it."""
    problem = ae_title_problem(value)
    if problem is not None:
        raise CommandError(f"{option} is not a DICOM AE title ({problem}): {value!r}.")
    return value
