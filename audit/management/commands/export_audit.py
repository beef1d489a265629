"""manage.py export_audit --format fhir|dicom|csv [--since] [--until] [--patient] [--output]."""

import argparse
import contextlib
import sys
from argparse import ArgumentParser
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TextIO

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from audit import exports
from audit.actions import Action, Basis, Outcome
from audit.events import Event
from audit.outfile import file_replaced, output_problem
from audit.selectors import EventFilters, event_filtered
from audit.services import append


def _moment(value: str) -> datetime:
    """An ISO date or date-time; naive values are in the project's time zone."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        # argparse names the option and exits 2 (a CommandError here would be a traceback:
        # Django parses the arguments before it handles command errors).
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO date or date-time") from exc
    return moment if timezone.is_aware(moment) else timezone.make_aware(moment)


class Command(BaseCommand):
    help = "Export a range of audit events as FHIR R4 AuditEvents, DICOM audit messages or CSV."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--format", required=True, choices=sorted(exports.FORMATS))
        parser.add_argument("--since", type=_moment, help="From this time (inclusive).")
        parser.add_argument("--until", type=_moment, help="Up to this time (exclusive).")
        parser.add_argument("--patient", default="", help="Only events about this national id.")
        parser.add_argument(
            "--output",
            type=Path,
            help="Write here instead of stdout (written whole or not at all).",
        )

    def handle(self, *args: object, output: Path | None, **options: object) -> None:
        filters = EventFilters(
            patient=options["patient"], since=options["since"], until=options["until"]
        )
        fmt = options["format"]
        problem = output and output_problem(output)
        if problem:
            raise CommandError(f"--output: {problem}.")
        try:
            with _opened(output) as out:
                # Exporting the log is itself an audited use of the log.
                append(
                    Event(
                        action=Action.AUDIT_EXPORT,
                        outcome=Outcome.PERMIT,
                        basis=Basis.DPO,
                        actor_role="system",
                        actor_username="manage.py",
                        detail={"filters": filters.used(), "format": fmt},
                    )
                )
                events = event_filtered(filters=filters).order_by("seq").iterator(chunk_size=2000)
                for chunk in exports.render(fmt, events):
                    out.write(chunk)
        except OSError as exc:
            raise CommandError(
                f"Cannot write {output}: {exc.strerror or exc}; nothing was written."
            ) from exc


@contextlib.contextmanager
def _opened(output: Path | None) -> Iterator[TextIO]:
    """The output file, complete or absent once done; stdout without one."""
    if output is None:
        yield sys.stdout
        return
    with file_replaced(output) as out:
        yield out
