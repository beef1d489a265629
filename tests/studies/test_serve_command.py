"""manage.py serve (`make run`): the DICOM listener's port taken is said plainly."""

import socket

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError


@pytest.mark.django_db
def test_a_taken_dicom_port_stops_it_with_a_message_not_a_traceback():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"127.0.0.1:{port} cannot run.*another port"):
            call_command("serve", "127.0.0.1:0", "--noreload", f"--dicom-port={port}")
