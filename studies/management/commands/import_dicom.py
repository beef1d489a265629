"""manage.py import_dicom PATH --institution CODE: ingest a file or a folder tree."""

import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError
from django.db import InterfaceError, OperationalError
from tqdm import tqdm

from anim_gateway.errors import database_unreachable
from audit.errors import AuditUnavailable
from consent.actors import Actor
from consent.gate import AccessDenied
from consent.models import Institution, Role
from studies.ingest import IngestResult, IngestSession, instance_ingest
from studies.spool import CHUNK_SIZE, Spooled, spool_chunks
from studies.storage_errors import StorageError, StorageMisconfigured, StorageUnavailable


class Unreadable(Exception):
    """A source file that cannot be read: reported, and the import goes on."""


def files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


class Command(BaseCommand):
    help = "Ingest DICOM files (a file or a folder tree) as studies of one institution."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--institution", required=True, help="performing institution code")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, path: Path, institution: str, no_progress: bool, **options) -> None:
        found = Institution.objects.filter(code=institution).first()
        if found is None:
            raise CommandError(f"No institution with code {institution!r}.")
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        actor = Actor(
            role=Role.SYSTEM,
            institution=found,
            username=f"cli:{found.code}",
            display_name=f"import_dicom for {found.code}",
            channel="cli",
        )
        session = IngestSession(actor=actor)
        counts: Counter = Counter()
        problems: list[tuple[Path, str]] = []
        files = files_under(path)
        for file in tqdm(files, unit="file", disable=no_progress or None, file=sys.stderr):
            try:
                result = instance_ingest(session=session, spooled=_spooled(file))
            except Unreadable as exc:
                result = IngestResult(status="rejected", reason=f"cannot be read ({exc})")
            except (
                OperationalError,
                InterfaceError,
                OSError,
                StorageError,
                BotoCoreError,
                ClientError,
                AccessDenied,
                AuditUnavailable,
            ) as exc:
                # The database, the audit log (ingest raises only that deny) or the
                # gateway's own disk or bucket failed: every next file would fail too. What
                # is stored stays; a rerun skips it as duplicates.
                self._summary(counts, problems, total=len(files))
                raise CommandError(f"Stopped at {file}: {_outage(exc)}. Run it again.") from exc
            counts[result.status] += 1
            if not result.ok:
                problems.append((file, result.reason))
        self._summary(counts, problems, total=len(files))

    def _summary(self, counts: Counter, problems: list[tuple[Path, str]], *, total: int) -> None:
        restored = f", {counts['restored']} restored" if counts["restored"] else ""
        self.stdout.write(
            f"{total} file(s): {counts['stored']} stored, {counts['duplicate']} duplicate"
            f"{restored}, {counts['rejected'] + counts['conflict']} rejected"
        )
        for file, reason in problems:
            self.stdout.write(f"  rejected {file}: {reason}")


def _spooled(file: Path) -> Spooled:
    """The file spooled; Unreadable when the source fails (not the gateway's disk)."""
    try:
        fp = file.open("rb")
    except OSError as exc:
        raise Unreadable(exc.strerror or type(exc).__name__) from exc
    with fp:
        return spool_chunks(_chunks(fp))


def _chunks(fp) -> Iterator[bytes]:
    while True:
        try:
            chunk = fp.read(CHUNK_SIZE)
        except OSError as exc:
            raise Unreadable(exc.strerror or type(exc).__name__) from exc
        if not chunk:
            return
        yield chunk


def _outage(exc: Exception) -> str:
    if isinstance(exc, AccessDenied):
        return exc.message
    if isinstance(exc, AuditUnavailable):
        return "the audit log is unavailable"
    if isinstance(exc, StorageUnavailable):
        return f"the gateway's storage is unavailable ({exc.reason})"
    if isinstance(exc, StorageMisconfigured):
        return f"the gateway's storage refuses it ({exc.reason}), a configuration fault"
    if isinstance(exc, BotoCoreError | ClientError):  # neither an outage nor a refusal
        return f"the object store failed ({type(exc).__name__})"
    if isinstance(exc, OSError):
        return f"the gateway's storage failed ({exc.strerror or type(exc).__name__})"
    if database_unreachable(exc):
        return "the database is unavailable"
    return f"a database error ({type(exc).__name__})"
