"""manage.py audit_checkpoint [--export FILE]: sign the current head, optionally export all."""

import json
from argparse import ArgumentParser
from pathlib import Path

from django.core.management.base import BaseCommand

from audit.checkpoints import checkpoint_export, checkpoint_take


class Command(BaseCommand):
    help = "Take a signed checkpoint of the audit chain; --export writes all checkpoints as JSON."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--export", type=Path, help="Write every checkpoint to this file.")

    def handle(self, *args: object, export: Path | None, **options: object) -> None:
        checkpoint = checkpoint_take()
        self.stdout.write(
            f"Checkpoint #{checkpoint.seq} {checkpoint.hash} signed by key {checkpoint.key_id}."
        )
        if export:
            document = checkpoint_export()
            export.write_text(json.dumps(document, indent=2) + "\n")
            self.stdout.write(f"Exported {len(document['checkpoints'])} checkpoints to {export}.")
