"""manage.py audit_checkpoint [--export FILE]: sign the current head, optionally export all."""

import json
from argparse import ArgumentParser
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.checkpoints import checkpoint_export, checkpoint_take
from audit.outfile import file_replaced, output_problem


class Command(BaseCommand):
    help = "Take a signed checkpoint of the audit chain; --export writes all checkpoints as JSON."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--export",
            type=Path,
            help="Write every checkpoint to this file (replaced whole, never half-written).",
        )

    def handle(self, *args: object, export: Path | None, **options: object) -> None:
        problem = export and output_problem(export)
        if problem:  # said before signing: the operator fixes the path and runs it once
            raise CommandError(f"--export: {problem}.")
        checkpoint = checkpoint_take()
        self.stdout.write(
            f"Checkpoint #{checkpoint.seq} {checkpoint.hash} signed by key {checkpoint.key_id}."
        )
        if export:
            document = checkpoint_export()
            try:
                with file_replaced(export) as out:
                    out.write(json.dumps(document, indent=2) + "\n")
            except OSError as exc:
                raise CommandError(
                    f"Cannot write {export}: {exc.strerror or exc}; the checkpoint is taken, "
                    "the export not written."
                ) from exc
            self.stdout.write(f"Exported {len(document['checkpoints'])} checkpoints to {export}.")
