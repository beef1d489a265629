"""manage.py dicom_listener: the C-STORE and C-ECHO listener for the member hospitals."""

import os

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from anim_gateway.command_options import ae_title_option, number_or_text, port_option


class Command(BaseCommand):
    help = "Listen for DICOM C-STORE and C-ECHO from the member institutions' AE titles."

    def add_arguments(self, parser) -> None:
        # Checked in handle(): a bad value is a CommandError (exit 1), not argparse's exit 2.
        parser.add_argument("--port", type=number_or_text, default=settings.DICOM_LISTENER_PORT)
        parser.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104
        parser.add_argument("--ae-title", default=settings.DICOM_LISTENER_AE_TITLE)
        parser.add_argument(
            "--processes",
            type=int,
            default=os.cpu_count() or 1,
            help="listener processes sharing the port (default: the CPU count); 1: no fork",
        )

    def handle(
        self, *args, port: str | int, host: str, ae_title: str, processes: int, **options
    ) -> None:
        from studies import dicom_net

        port = port_option("--port", port)
        ae_title = ae_title_option("--ae-title", ae_title)
        if processes < 1:
            raise CommandError("--processes must be at least 1")
        self.stdout.write(
            f"DICOM listener {ae_title} on {host}:{port}, {processes} process(es) (Ctrl-C to stop)"
        )
        try:
            if processes == 1:
                dicom_net.start_listener(ae_title=ae_title, host=host, port=port, block=True)
            else:
                dicom_net.serve_processes(
                    ae_title=ae_title, host=host, port=port, processes=processes
                )
        except KeyboardInterrupt:
            pass
        except OSError as exc:  # a port in use, an unknown host: said plainly, no traceback
            raise CommandError(f"The listener on {host}:{port} cannot run: {exc}") from exc
        self.stdout.write("Stopped.")
