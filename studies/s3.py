"""Objects on S3, through django-storages, never held whole in memory.

Reading: django-storages' S3File downloads the whole object into a SpooledTemporaryFile at
its first read, and with its default AWS_S3_MAX_MEMORY_SIZE of 0 that file never rolls over
to disk: a 600 MB instance would sit in memory for every request reading it, and a single
frame would wait for all of it. Here an object opened by django-storages (its HEAD, with
the storage's own parameters) is read with GetObject and a Range from the position asked,
the body streamed as it arrives.

Writing: django-storages uploads a file object, and boto3 then reads up to ten 8 MiB parts
ahead into memory. A spool file is on disk already: boto3 is given its path, and reads each
part from the file as it sends it.
"""

import datetime
import io
import logging
import os
from collections.abc import Iterator

import urllib3
from boto3.s3.transfer import create_transfer_manager
from botocore.exceptions import BotoCoreError, ResponseStreamingError
from s3transfer.constants import ALLOWED_DOWNLOAD_ARGS
from storages.backends import s3 as django_storages_s3
from storages.backends.s3 import S3File
from storages.utils import clean_name

logger = logging.getLogger(__name__)

# A seek ahead by at most this much reads on through the open body, dropping the gap,
# rather than starting another GET: walking an encapsulated Pixel Data's fragments (pydicom
# reads an item's header, then seeks over its fragment) costs one GET, not one per fragment.
SKIP_WITHIN = 4 * 1024 * 1024
# Read buffer: pydicom's small reads and short seeks back within it cost no request.
BUFFER_SIZE = 256 * 1024
# A body broken while streaming (a reset connection, a read timeout) is asked again from
# where it broke, this many times in a row; the ETag pins the object, so bytes never mix
# versions.
RESUMES = 2
# What a body may raise when it breaks: botocore's own, and urllib3's that botocore lets
# through (an SSLError in the middle of a TLS stream).
BROKEN = (BotoCoreError, urllib3.exceptions.HTTPError)


def ranged(fp: object) -> io.BufferedReader | None:
    """A buffered, seekable reader of the S3 object behind ``fp``, an S3File opened for
    reading; None for any other file (a local one reads as it is), or on a storage that
    gzips what it stores (AWS_IS_GZIPPED: its objects are read whole, as django-storages
    decompresses them)."""
    if not isinstance(fp, S3File) or fp._storage.gzip:
        return None
    raw = RangedObject(
        fp.obj,
        size=fp.obj.content_length,
        etag=fp.obj.e_tag,
        params=_get_parameters(fp),
    )
    return io.BufferedReader(raw, buffer_size=BUFFER_SIZE)


def _get_parameters(fp: S3File) -> dict:
    # What django-storages passes to its own download (a customer key, say), as GetObject
    # takes it too.
    params = fp._storage.get_object_parameters(fp.name)
    return {key: value for key, value in params.items() if key in ALLOWED_DOWNLOAD_ARGS}


class RangedObject(io.RawIOBase):
    """An S3 object (boto3's ``Object``, loaded) as a raw binary file over ranged GETs."""

    def __init__(self, obj, *, size: int, etag: str, params: dict) -> None:
        super().__init__()
        self._obj, self._size, self._etag, self._params = obj, size, etag, params
        self._position = 0
        self._body = None  # the open GET's streaming body, and where it stands
        self._body_position = 0
        self._resumes_left = RESUMES

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        bases = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}
        if whence not in bases:  # SEEK_DATA, SEEK_HOLE: an object has no holes to find
            raise io.UnsupportedOperation(f"seek whence {whence}")
        base = bases[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def readinto(self, buffer) -> int:
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        while True:
            try:
                data = self._body_at(self._position).read(wanted)
                break
            except BROKEN as exc:  # the body broke: ask again from this position
                self._drop_body()
                if self._resumes_left == 0:
                    raise ResponseStreamingError(error=exc) from exc
                self._resumes_left -= 1
                logger.warning("S3 read broke (%s); resuming", type(exc).__name__)
        self._resumes_left = RESUMES  # it reads again: the next break starts a new count
        if not data:  # the body ended early: the object is shorter than its HEAD said
            self._drop_body()
            raise OSError("The stored object ended before its length.")
        buffer[: len(data)] = data
        self._position += len(data)
        self._body_position = self._position
        return len(data)

    def close(self) -> None:
        self._drop_body()
        super().close()

    def _body_at(self, position: int):
        """The open body, moved on to ``position`` when it lies a little ahead; else a new
        GET from there to the end."""
        gap = position - self._body_position
        if self._body is not None and 0 <= gap <= SKIP_WITHIN:
            while gap:
                dropped = len(self._body.read(min(gap, BUFFER_SIZE)))
                if not dropped:
                    raise OSError("The stored object ended before its length.")
                gap -= dropped
                self._body_position += dropped
            return self._body
        self._drop_body()
        self._body, self._body_position = self._get(position), position
        return self._body

    def _get(self, position: int):
        """A GET from ``position`` to the end; the ETag refuses another version's bytes.

        Open-ended: a body dropped before its end (a seek far away) costs its connection,
        which urllib3 closes rather than pool; a frame or a whole object costs one GET."""
        answer = self._obj.get(Range=f"bytes={position}-", IfMatch=self._etag, **self._params)
        # A server (or a proxy) that ignores Range answers with the whole object: refused,
        # rather than served from the wrong offset.
        if not answer.get("ContentRange", "").startswith(f"bytes {position}-"):
            answer["Body"].close()
            raise OSError("The storage did not answer the range asked.")
        return answer["Body"]

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None


class S3Storage(django_storages_s3.S3Storage):
    """django-storages' S3 storage (STORAGE_BACKEND=s3), uploading a file that has a path on
    disk by its path (a spool file, handed over as Django hands temporary uploads)."""

    def _save(self, name: str, content) -> str:
        temporary_file_path = getattr(content, "temporary_file_path", None)
        if temporary_file_path is None or self.gzip:
            return super()._save(name, content)
        cleaned = clean_name(name)
        key = self._normalize_name(cleaned)
        params = self._get_write_parameters(key, content)
        # boto3's transfer manager, as Object.upload_file uses it, without that method's
        # wrapping of errors into S3UploadFailedError (a message naming the file and the
        # bucket): a failure is botocore's own error, as django-storages' upload raised it.
        client = self.connection.meta.client
        with create_transfer_manager(client, self.transfer_config) as manager:
            manager.upload(temporary_file_path(), self.bucket_name, key, params).result()
        return cleaned

    def objects_under(self, folder: str) -> Iterator[tuple[str, datetime.datetime]]:
        """(name, last modified) of every object stored under ``folder``, at any depth: a
        listing, 1,000 objects per request (S3 has no folders to walk)."""
        path = self._normalize_name(clean_name(folder)).rstrip("/")
        prefix = f"{path}/" if path else ""
        location = len(self.location)
        for summary in self.bucket.objects.filter(Prefix=prefix):
            yield summary.key[location:].lstrip("/"), summary.last_modified
