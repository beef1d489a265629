"""Runs the gateway's dicom_listener with TCP_NODELAY on its sockets: listener.py PORT."""

import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(BENCH.parent), str(BENCH)]
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anim_gateway.settings")

if __name__ == "__main__":
    import django

    django.setup()
    from django.core.management import call_command

    from orthanc.clients import enable_tcp_nodelay

    enable_tcp_nodelay()
    options = {}
    # The command's default is one process per CPU; BENCH_LISTENER_PROCESSES=1 compares.
    if os.environ.get("BENCH_LISTENER_PROCESSES"):
        options["processes"] = int(os.environ["BENCH_LISTENER_PROCESSES"])
    call_command("dicom_listener", port=int(sys.argv[1]), host="127.0.0.1", **options)
