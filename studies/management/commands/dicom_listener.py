"""manage.py dicom_listener: the C-STORE and C-ECHO listener for the member hospitals."""

from django.conf import settings
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Listen for DICOM C-STORE and C-ECHO from the member institutions' AE titles."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--port", type=int, default=settings.DICOM_LISTENER_PORT)
        parser.add_argument("--host", default="0.0.0.0", help="address to listen on")  # noqa: S104
        parser.add_argument("--ae-title", default=settings.DICOM_LISTENER_AE_TITLE)

    def handle(self, *args, port: int, host: str, ae_title: str, **options) -> None:
        from studies.dicom_net import start_listener

        self.stdout.write(f"DICOM listener {ae_title} on {host}:{port} (Ctrl-C to stop)")
        try:
            start_listener(ae_title=ae_title, host=host, port=port, block=True)
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")
