"""A throwaway gateway on SQLite whose ingest service is timed one file per process."""

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .measure import timed_rss


def environment(work: Path, setting: str, limit: int | None) -> dict:
    """The gateway's settings in ``work``; ``limit`` sets ``setting`` (0: no limit)."""
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="anim_gateway.settings",
        SECRET_KEY="bench-only-secret",
        VAR_DIR=str(work),
        ALLOWED_HOSTS="testserver",
        DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}",
    )
    env.pop("CELERY_BROKER_URL", None)
    if limit is not None:
        env[setting] = str(limit or 2**62)
    return env


def start(
    child_args: list[str] | None,
    *,
    limit: int | None,
    setting: str,
    prefix: str,
    child: Callable[[Path], None],
) -> tuple[Path, dict] | None:
    """In a child process (``--child WORK FILE``): run ``child`` on its file, and None.
    Otherwise a fresh work folder and its settings, set in this process, the gateway set up."""
    if child_args:
        os.environ.update(environment(Path(child_args[0]), setting, limit))
        child(Path(child_args[1]))
        return None
    work = Path(tempfile.mkdtemp(prefix=prefix))
    env = environment(work, setting, limit)
    os.environ.update(env)
    prepare()
    return work, env


def prepare() -> None:
    """Set Django up in this process, migrate, and make the institution files are stored for."""
    import django

    django.setup()
    from django.core.management import call_command

    from consent.services import provisioning

    call_command("migrate", verbosity=0)
    provisioning.institution_create(code="CHL", name="CHL", ae_titles=["CHL_PACS"])


def ingest_timed(file: Path) -> tuple[dict, object]:
    """Ingest one file (a copy spooled first, as every door does): what it cost, and the
    result. Run in a child process of its own, so that its peak memory is its alone."""
    import django

    django.setup()
    from consent.actors import Actor
    from consent.models import Institution
    from studies.ingest import IngestSession, instance_ingest
    from studies.spool import spool_path

    actor = Actor(role="system", institution=Institution.objects.get(code="CHL"), channel="cli")
    session = IngestSession(actor=actor)
    spooled = spool_path(file)
    results = []
    run = timed_rss(lambda: results.append(instance_ingest(session=session, spooled=spooled)))
    result = results[0]
    row = {
        "status": result.status,
        "reason": result.reason[:90],
        "seconds": run.seconds,
        "peak_mib": run.peak_bytes / 2**20,
    }
    return row, result


def run_child(script: str, work: Path, file: Path, limit: int | None, env: dict) -> dict:
    """Run ``script --child WORK FILE`` and return the row it printed last (JSON)."""
    out = subprocess.run(
        [sys.executable, script, "--child", str(work), str(file)]
        + ([] if limit is None else ["--limit", str(limit)]),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
