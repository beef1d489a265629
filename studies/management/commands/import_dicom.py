"""manage.py import_dicom PATH --institution CODE: ingest a file or a folder tree."""

import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
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


@dataclass
class Tree:
    """What a walk of PATH found: the entries to import, and the folders it could not list."""

    files: list[Path] = field(default_factory=list)
    unlisted: list[tuple[Path, str]] = field(default_factory=list)


def tree_under(path: Path) -> Tree:
    """PATH itself, or every entry under it that is not a folder (names starting with "."
    skipped). Links to folders are not followed, so a link loop cannot trap the walk; a
    link to a file is, and a broken one is kept, to be reported."""
    if not path.is_dir():
        return Tree(files=[path])
    tree = Tree()

    def unlisted(exc: OSError) -> None:
        tree.unlisted.append((Path(exc.filename), exc.strerror or type(exc).__name__))

    for folder, _dirs, names in os.walk(path, onerror=unlisted):
        tree.files += [Path(folder, name) for name in names if not name.startswith(".")]
    tree.files.sort()
    return tree


def files_under(path: Path) -> list[Path]:
    return tree_under(path).files


class Command(BaseCommand):
    help = "Ingest DICOM files (a file or a folder tree) as studies of one institution."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--institution", required=True, help="performing institution code")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, path: Path, institution: str, no_progress: bool, **options) -> None:
        session = IngestSession(actor=_actor(institution))
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        tree = tree_under(path)
        if not (tree.files or tree.unlisted):
            raise CommandError(f"No files to import under {path} (names starting with . skipped).")
        # A folder that cannot be listed is reported with the rejections: its files were not
        # imported.
        problems = [(folder, f"folder cannot be read ({why})") for folder, why in tree.unlisted]
        counts = self._import(session, tree.files, problems, no_progress=no_progress)
        self._summary(counts, problems, total=len(tree.files))
        if problems:
            # Scripts see it: exit 1, as backfill_bulkdata does for the instances it left.
            raise CommandError(
                f"{len(problems)} not imported (listed above); the others are stored. "
                "A rerun skips those already stored."
            )

    def _import(
        self,
        session: IngestSession,
        files: list[Path],
        problems: list[tuple[Path, str]],
        *,
        no_progress: bool,
    ) -> Counter:
        """Ingest each file, counting the outcomes and adding each rejection to problems."""
        counts: Counter = Counter()
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
        return counts

    def _summary(self, counts: Counter, problems: list[tuple[Path, str]], *, total: int) -> None:
        restored = f", {counts['restored']} restored" if counts["restored"] else ""
        self.stdout.write(
            f"{total} file(s): {counts['stored']} stored, {counts['duplicate']} duplicate"
            f"{restored}, {counts['rejected'] + counts['conflict']} rejected"
        )
        for file, reason in problems:
            self.stdout.write(f"  rejected {file}: {reason}")


def _actor(code: str) -> Actor:
    """The performing institution's system, as which the files are ingested."""
    found = Institution.objects.filter(code=code).first()
    if found is None:
        raise CommandError(f"No institution with code {code!r}.")
    return Actor(
        role=Role.SYSTEM,
        institution=found,
        username=f"cli:{found.code}",
        display_name=f"import_dicom for {found.code}",
        channel="cli",
    )


def _spooled(file: Path) -> Spooled:
    """The file spooled; Unreadable when the source fails (not the gateway's disk)."""
    if not file.is_file():  # a pipe would block the import for ever
        raise Unreadable(_not_a_file(file))
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


def _not_a_file(file: Path) -> str:
    if file.is_symlink() and not file.exists():
        return "a broken link or a link loop"
    return "not a regular file"


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
