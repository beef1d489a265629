"""Object storage of DICOM files through Django's storage API (local folder or S3)."""

import datetime
import functools
import hashlib
import logging
import os
import posixpath
import secrets
import stat
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from django.core.files import File
from django.core.files.storage import Storage, default_storage

from anim_gateway.errors import ApplicationError
from studies import s3
from studies.spool import CHUNK_SIZE, Spooled
from studies.storage_errors import (
    OUTAGE_ERRNOS,
    STORAGE_ERRORS,
    StorageMisconfigured,
    raise_storage_failure,
    s3_error_code,
    storage_failure_kind,
)

logger = logging.getLogger(__name__)


# What a storage raises when it cannot give an object.
READ_ERRORS = STORAGE_ERRORS
# S3's answers that it has no such object.
S3_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


class ObjectUnavailable(ApplicationError):
    """The index names an object its storage cannot give (lost, or the storage is down):
    the server's fault, told apart from any other so that operators look at storage and
    fixity rather than at the request.

    ``conclusive`` when the storage answered about the object itself (a file missing or
    unreadable under a storage root that is there, S3's "no such key"), not when it could
    not answer (S3 unreachable, throttled or refusing the credentials; a local root gone or
    failing): a fixity check judges only the first. ``transient`` when the storage is down
    rather than misconfigured: 503, the client may retry.
    """

    status_code = 500
    code = "OBJECT_UNAVAILABLE"

    def __init__(
        self,
        *,
        conclusive: bool = True,
        transient: bool | None = None,
        what: str = "copy of this instance",
    ) -> None:
        super().__init__(f"The stored {what} cannot be read; the error has been logged.")
        self.conclusive = conclusive
        if transient is None:
            transient = not conclusive  # a storage that could not answer: down, unless told
        if transient:
            self.status_code = 503


def _unavailable(
    key: str, exc: Exception, doing: str, what: str = "copy of this instance"
) -> ObjectUnavailable:
    # The error's type only: its text may name a path or an endpoint, never needed here.
    logger.error("Stored object %s cannot be %s: %s", key, doing, type(exc).__name__)
    if isinstance(exc, BotoCoreError | ClientError):
        return _s3_unavailable(exc, what)
    if not isinstance(exc, OSError):
        return ObjectUnavailable(conclusive=False, what=what)
    # A local file: this object is lost only if the storage itself is there to say so.
    lost = exc.errno not in OUTAGE_ERRNOS and _storage_reachable(key)
    if not lost:
        logger.error("The storage holding %s cannot be reached: no verdict on the object", key)
    return ObjectUnavailable(conclusive=lost, what=what)


def _s3_unavailable(exc: BotoCoreError | ClientError, what: str) -> ObjectUnavailable:
    if storage_failure_kind(exc) is StorageMisconfigured:
        # No verdict on the object (S3 answers AccessDenied for a missing key to a client
        # that may not list), and no retry fixes it: a 500.
        return ObjectUnavailable(conclusive=False, transient=False, what=what)
    if isinstance(exc, ClientError):
        return ObjectUnavailable(conclusive=s3_error_code(exc) in S3_NOT_FOUND, what=what)
    return ObjectUnavailable(conclusive=False, what=what)  # unreachable, throttled


def _storage_reachable(key: str) -> bool:
    """Whether a local storage's root, and the top folder the key lies in (dicom/,
    previews/), can be opened: a storage whose mount is gone leaves no root, an unreadable
    one, or an empty mount point behind, where every object would look lost. True on a
    storage without local paths (S3 answers for itself)."""
    try:
        root = Path(storage().path(""))
    except NotImplementedError:
        return True
    top, sep, _ = key.partition("/")
    for folder in (root, root / top) if sep else (root,):
        try:
            with os.scandir(folder) as entries:
                next(entries, None)
        except OSError:
            return False
    return True


class _SpoolFile(File):
    """Lets FileSystemStorage move the spool file into place instead of copying it."""

    def temporary_file_path(self) -> str:
        return self.name


def storage() -> Storage:
    return default_storage


def object_key(*, study_uid: str, series_uid: str, sop_uid: str) -> str:
    """A new key for an instance's object; UIDs are validated before they get here.

    The random part keeps two uploads of one UID (a race, a conflict) from ever sharing a
    key, on storages that overwrite (S3) as on those that rename (local folder).
    """
    return f"dicom/{study_uid}/{series_uid}/{sop_uid}.{secrets.token_hex(8)}.dcm"


def preview_key(*, series_uid: str) -> str:
    """A new key for a series' preview: random too, so that a worker that finds the preview
    made by another deletes its own object, not the one the series names."""
    return f"previews/{series_uid}.{secrets.token_hex(8)}.png"


def object_put(*, key: str, spooled: Spooled) -> str:
    """Move the spool file into storage; returns the key actually used. StorageUnavailable
    or StorageMisconfigured when the storage fails so (logged)."""
    try:
        with spooled.path.open("rb") as fp:
            name = storage().save(key, _SpoolFile(fp, name=str(spooled.path)))
    except STORAGE_ERRORS as exc:
        raise_storage_failure(exc, "storing an object")
        raise
    spooled.discard()  # already gone when it was moved
    return name


def objects_sync(keys: list[str]) -> None:
    """Make stored objects durable before their index commits: each file and the folders
    that name it are fsynced, all of them at once (the file system commits them together,
    where one after the other each would wait for a commit of its own).

    A storage without local paths (S3) has made an object durable when it answered.
    """
    paths = set()
    for key in keys:
        path = object_local_path(key=key)
        if path is not None:
            # The file, and each folder up to the storage's root: a new folder or a name
            # moved into one is durable only once the folder holding it is synced.
            paths |= {path, *path.parents[: key.count("/") + 1]}
    if not paths:
        return
    try:
        # Sorted: files before folders is not needed, one order keeps runs comparable.
        list(_sync_pool().map(_fsync, sorted(paths)))
    except OSError as exc:
        raise_storage_failure(exc, "syncing stored objects")
        raise


@functools.cache
def _sync_pool() -> ThreadPoolExecutor:
    # Made in the process that syncs (a gunicorn worker), never before the fork.
    return ThreadPoolExecutor(max_workers=8, thread_name_prefix="fsync")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def objects_missing(keys: list[str]) -> list[str]:
    """The keys whose object is gone (logged): a stat each on a local folder; on S3 a
    listing of the folder they share, a request per 1,000 objects (a HEAD each would cost a
    request per instance). ObjectUnavailable when the storage cannot answer."""
    listed = _names_listed(keys)
    missing = _files_missing(keys) if listed is None else [key for key in keys if key not in listed]
    if missing:
        logger.error(
            "%d of %d stored objects are missing, the first %s", len(missing), len(keys), missing[0]
        )
    return missing


def _names_listed(keys: list[str]) -> set[str] | None:
    """The names stored under the keys' common folder, on a storage that lists them (S3);
    None on any other."""
    lister = getattr(storage(), "objects_under", None)
    if lister is None or not keys:
        return None
    folder = posixpath.commonpath([key.rpartition("/")[0] for key in keys])
    if not folder:  # keys at the top: no folder to list short of the whole bucket
        return None
    try:
        return {name for name, _ in lister(folder)}
    except READ_ERRORS as exc:
        raise _unavailable(folder, exc, "listed", "copies of these instances") from exc


def objects_under(folder: str) -> Iterator[tuple[str, datetime.datetime]]:
    """(key, last modified) of every stored object under ``folder``, at any depth: listed
    where the storage lists (S3), walked folder by folder on a local one."""
    lister = getattr(storage(), "objects_under", None)
    if lister is not None:
        return lister(folder)
    return _walked(storage(), folder)


def _walked(store: Storage, folder: str) -> Iterator[tuple[str, datetime.datetime]]:
    folders, files = store.listdir(folder) if store.exists(folder) else ([], [])
    for name in files:
        key = f"{folder}/{name}"
        yield key, store.get_modified_time(key)
    for inner in folders:
        yield from _walked(store, f"{folder}/{inner}")


def _files_missing(keys: list[str]) -> list[str]:
    """The keys whose local file is gone; ObjectUnavailable (no verdict) when it is the
    storage that is gone or failing rather than the files."""
    what = "copies of these instances"
    paths = {key: object_local_path(key=key) for key in keys}
    try:
        missing = [key for key, path in paths.items() if path is not None and not _is_file(path)]
    except OSError as exc:
        raise _unavailable(keys[0], exc, "found", what) from exc
    if missing and not _storage_reachable(missing[0]):
        logger.error("The storage holding %s cannot be reached: no verdict", missing[0])
        raise ObjectUnavailable(conclusive=False, what=what)
    return missing


def _is_file(path: Path) -> bool:
    """Path.is_file without its PermissionError: an object that cannot be reached is lost;
    a disk failing (EIO) says nothing of the object and is raised."""
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError as exc:  # gone, or not even its folder can be read
        if exc.errno in OUTAGE_ERRNOS:
            raise
        return False


def object_delete(*, key: str) -> None:
    try:
        storage().delete(key)
    except STORAGE_ERRORS as exc:
        raise_storage_failure(exc, "deleting an object")
        raise


def object_local_path(*, key: str) -> Path | None:
    """The object's local path when the storage has one (not on S3)."""
    try:
        return Path(storage().path(key))
    except NotImplementedError:
        return None


def object_chunks(*, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
    """The object's bytes, or a range of them, chunk by chunk."""
    return _chunks(object_reader(key=key), start=start, length=length)


def object_reader(*, key: str) -> "Reader":
    """The stored object, open for reading and seeking, whose storage failures are
    ObjectUnavailable (logged) wherever they come: at the opening, or at a read (S3 opens
    lazily); on S3 read through ranged GETs, streamed rather than downloaded whole."""
    fp = object_open(key=key)
    return Reader(s3.ranged(fp) or fp, key=key)


def object_open(*, key: str) -> File:
    """The stored object, open for reading; ObjectUnavailable when storage cannot open it."""
    try:
        return storage().open(key, "rb")
    except READ_ERRORS as exc:
        raise _unavailable(key, exc, "opened") from exc


class Reader:
    """An open stored object: read, seek and tell as a binary file (pydicom reads frames
    through them), a storage's failure raised as ObjectUnavailable; any other error is a
    bug, left to show."""

    def __init__(self, fp: File, *, key: str) -> None:
        self._fp, self._key = fp, key
        # The first failure, kept: a reader's caller (pydicom) may catch it and go on, or
        # raise another error in its place; what it made of the bytes is then untrusted.
        self.failure: ObjectUnavailable | None = None

    def read(self, size: int = -1) -> bytes:
        return self._guarded(self._fp.read, size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._guarded(self._fp.seek, offset, whence)

    def tell(self) -> int:
        return self._guarded(self._fp.tell)

    def close(self) -> None:
        self._fp.close()

    def __enter__(self) -> "Reader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _guarded(self, call: Callable, *args: int):
        try:
            return call(*args)
        except READ_ERRORS as exc:
            error = _unavailable(self._key, exc, "read")
            self.failure = self.failure or error
            raise error from exc


def _chunks(reader: Reader, *, start: int, length: int | None) -> Iterator[bytes]:
    with reader:
        if start:
            reader.seek(start)
        remaining = length
        while remaining is None or remaining > 0:
            size = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
            chunk = reader.read(size)
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


def object_read(*, key: str, start: int, length: int) -> bytes:
    return b"".join(object_chunks(key=key, start=start, length=length))


def object_sha256(*, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in object_chunks(key=key):
        digest.update(chunk)
    return digest.hexdigest()
