"""Spool files: incoming objects written to local disk in chunks, preamble sanitised, hashed."""

import hashlib
import os
import queue
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from studies.dicom import PREAMBLE_LENGTH, sanitise_preamble
from studies.storage_errors import raise_storage_failure

CHUNK_SIZE = 1024 * 1024
# Every this many bytes the spool file's new pages are handed to the kernel for writing
# (POSIX_FADV_DONTNEED starts their writeback on Linux): a large body is written to disk
# while the rest of it arrives, and the final fsync waits for the last few MiB only.
WRITEBACK_BYTES = 8 * 1024 * 1024
BACKGROUND_AFTER = 4 * 1024 * 1024
BACKGROUND_QUEUE = 4
_HEAD = PREAMBLE_LENGTH + 4


@dataclass(frozen=True, kw_only=True)
class Spooled:
    """A complete spool file; whoever holds it moves it into storage or discards it."""

    path: Path
    size: int
    sha256: str
    # The SOP Class and SOP Instance UIDs its sender declared for it (a C-STORE-RQ's
    # Affected ones), which its data set must repeat; None when only the object names itself.
    declared: tuple[str, str] | None = None

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


class SpoolWriter:
    """Write an object chunk by chunk; the first 132 bytes are held back to check the preamble.

    Past BACKGROUND_AFTER bytes, hashing and writing move to a thread of their own: both
    release the GIL, so a large body is hashed on one core while it is received on another
    (SHA-256 was half the time of a large STOW). At most BACKGROUND_QUEUE chunks wait.

    Its disk's failures are raised as StorageUnavailable (full, failing) or
    StorageMisconfigured (a spool folder it may not write); any other error as it is.
    """

    def __init__(self) -> None:
        try:
            fd, name = tempfile.mkstemp(dir=_spool_dir(), suffix=".dcm")
        except OSError as exc:
            raise_storage_failure(exc, "spooling")
            raise
        self.path = Path(name)
        self._fp = os.fdopen(fd, "wb")
        self._hash = hashlib.sha256()
        self._head = b""
        self._head_done = False
        self.size = 0  # bytes accepted
        self._written = 0  # bytes hashed and written
        self._handed = 0  # bytes handed to the kernel for writeback
        self._sink: _Sink | None = None

    def write(self, chunk: bytes | memoryview) -> None:
        try:
            self._write(chunk)
        except OSError as exc:
            raise_storage_failure(exc, "spooling")
            raise

    def _write(self, chunk: bytes | memoryview) -> None:
        if not self._head_done:
            self._head += chunk
            if len(self._head) < _HEAD:
                return
            chunk, self._head = sanitise_preamble(self._head), b""
            self._head_done = True
        self.size += len(chunk)
        if self._sink is not None:
            self._sink.put(chunk if _immutable(chunk) else bytes(chunk))
            return
        self._consume(chunk)
        if self.size >= BACKGROUND_AFTER:
            self._sink = _Sink(self._consume)

    def _consume(self, chunk: bytes | memoryview) -> None:
        self._hash.update(chunk)
        self._fp.write(chunk)
        self._written += len(chunk)
        if self._written - self._handed >= WRITEBACK_BYTES:
            self._start_writeback()

    def _start_writeback(self) -> None:
        self._fp.flush()
        if hasattr(os, "posix_fadvise"):
            length = self._written - self._handed
            os.posix_fadvise(self._fp.fileno(), self._handed, length, os.POSIX_FADV_DONTNEED)
        self._handed = self._written

    def finish(self) -> Spooled:
        """The complete spool file, not durable yet: storage makes it so once it is in place
        (studies.storage.objects_sync), one fsync per object, all of a batch at once."""
        try:
            if not self._head_done:
                self._head_done = True
                self._write(self._head)
            if self._sink is not None:
                self._sink.close()  # raises the writer thread's error, if any
            self._fp.close()
        except BaseException as exc:
            # A late write error (a full disk on the last chunks): nothing is left behind.
            self.abort()
            raise_storage_failure(exc, "spooling")
            raise
        return Spooled(path=self.path, size=self.size, sha256=self._hash.hexdigest())

    def abort(self) -> None:
        if self._sink is not None:
            self._sink.close(check=False)
        self._fp.close()
        self.path.unlink(missing_ok=True)


class _Sink:
    """A thread that hands queued chunks to ``consume`` in order; its first error is raised
    in the writer's thread, at its next chunk or at close."""

    def __init__(self, consume: Callable[[bytes], None]) -> None:
        self._consume = consume
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=BACKGROUND_QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="spool-sink", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (chunk := self._queue.get()) is not None:
            if self._error is None:  # after an error, chunks are only taken off the queue
                try:
                    self._consume(chunk)
                except BaseException as exc:
                    self._error = exc

    def put(self, chunk: bytes) -> None:
        self._raise()
        self._queue.put(chunk)

    def close(self, *, check: bool = True) -> None:
        self._queue.put(None)
        self._thread.join()
        if check:
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error


def _immutable(chunk: bytes | memoryview) -> bool:
    """Whether a chunk can wait in the queue as it is (a mutable buffer may be reused)."""
    return isinstance(chunk, bytes) or (isinstance(chunk, memoryview) and chunk.readonly)


def _spool_dir() -> Path:
    spool_dir = Path(settings.SPOOL_DIR)
    spool_dir.mkdir(parents=True, exist_ok=True)
    return spool_dir


def spool_chunks(chunks: Iterable[bytes]) -> Spooled:
    """Spool an iterable of byte chunks."""
    writer = SpoolWriter()
    try:
        for chunk in chunks:
            writer.write(chunk)
    except BaseException:
        writer.abort()
        raise
    return writer.finish()


def spool_file(fp: BinaryIO) -> Spooled:
    """Spool a readable binary file, CHUNK_SIZE bytes at a time."""
    return spool_chunks(iter(lambda: fp.read(CHUNK_SIZE), b""))


def spool_path(path: Path) -> Spooled:
    with path.open("rb") as fp:
        return spool_file(fp)
