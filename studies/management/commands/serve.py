"""manage.py serve: the web server and the DICOM listener together, for `make run`."""

import os

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from anim_gateway.command_options import number_or_text, port_option


class Command(BaseCommand):
    help = "Run Django's development server and the DICOM listener (in a background thread)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--dicom-host", default="127.0.0.1")
        # Checked in handle(): a bad value is a CommandError (exit 1), not argparse's exit 2.
        parser.add_argument(
            "--dicom-port", type=number_or_text, default=settings.DICOM_LISTENER_PORT
        )
        parser.add_argument("--noreload", action="store_true")

    def handle(
        self,
        *args,
        addrport: str,
        dicom_host: str,
        dicom_port: str | int,
        noreload: bool,
        **options,
    ) -> None:
        dicom_port = port_option("--dicom-port", dicom_port)
        # With the autoreloader, only the child process that serves (RUN_MAIN) listens.
        if noreload or os.environ.get("RUN_MAIN") == "true":
            from studies import dicom_net

            try:
                dicom_net.start_listener(
                    ae_title=settings.DICOM_LISTENER_AE_TITLE,
                    host=dicom_host,
                    port=dicom_port,
                    block=False,
                )
            except OSError as exc:  # a second `make run`, say: said plainly, no traceback
                raise CommandError(
                    f"The DICOM listener on {dicom_host}:{dicom_port} cannot run: {exc}. "
                    "Choose another port: make run DICOM_LISTENER_PORT=11113"
                ) from exc
            self.stdout.write(
                f"DICOM listener {settings.DICOM_LISTENER_AE_TITLE} on {dicom_host}:{dicom_port}"
            )
        call_command("runserver", addrport, use_reloader=not noreload)
