"""manage.py verify_audit: exit 0 and a summary if the chain verifies, 1 naming the bad seq."""

import os
from argparse import ArgumentParser
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import load_claims
from audit.verification import verify_chain


class Command(BaseCommand):
    help = "Verify the audit hash chain and its signed checkpoints."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--checkpoints",
            type=Path,
            help="An exported checkpoint file (audit_checkpoint --export) to verify against.",
        )
        parser.add_argument("--chunk-size", type=int, default=5000)
        parser.add_argument(
            "--workers",
            type=int,
            default=min(4, os.cpu_count() or 1),
            help="Processes verifying ranges of the chain in parallel (PostgreSQL).",
        )

    def handle(
        self, *args: object, checkpoints: Path | None, chunk_size: int, workers: int, **options
    ) -> None:
        for option, value in (("--chunk-size", chunk_size), ("--workers", workers)):
            if value < 1:
                raise CommandError(f"{option}: a whole number of 1 or more, not {value}.")
        try:
            claims = load_claims(checkpoints) if checkpoints else []
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        result = verify_chain(extra_claims=claims, chunk_size=chunk_size, workers=workers)
        if not result.valid:
            # CommandError exits with status 1 and prints the message on stderr.
            raise CommandError(result.summary())
        self.stdout.write(result.summary())
