"""multipart/related (RFC 2387) bodies: a streaming reader to spool files, and a writer."""

import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.message import Message
from email.utils import collapse_rfc2231_value

from studies.spool import CHUNK_SIZE, Spooled, SpoolWriter

_MAX_HEADER_BYTES = 16 * 1024


class MalformedMultipart(Exception):
    """The body does not follow RFC 2046; the message says where it went wrong."""


class BodyTooLarge(Exception):
    """The body grew past the configured maximum while being read."""


@dataclass(frozen=True, kw_only=True)
class Part:
    content_type: str
    spooled: Spooled


def parse_content_type(value: str) -> tuple[str, dict[str, str]]:
    """('multipart/related', {'type': 'application/dicom', 'boundary': ...}) from a header."""
    message = Message()
    message["content-type"] = value
    params = {k.lower(): _text(v) for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_type(), params


def _text(value: str | tuple) -> str:
    # An RFC 2231 parameter (type*=utf-8''...) comes back as a (charset, language, value)
    # tuple: its decoded text, so that a parameter is always a string. A charset that cannot
    # decode it (idna refuses errors="replace") gives an empty value, which fails the checks.
    if isinstance(value, str):
        return value
    try:
        return collapse_rfc2231_value(value)
    except (LookupError, UnicodeError, ValueError):
        return ""


class MultipartReader:
    """Reads parts one at a time from ``read(n)``, spooling each part's body in chunks.

    Only a window of a few chunks is ever in memory, whatever the size of a part.
    """

    def __init__(self, read: Callable[[int], bytes], *, boundary: str, max_bytes: int) -> None:
        if not boundary or len(boundary) > 70:
            raise MalformedMultipart("The boundary parameter is missing or longer than 70.")
        self._read = read
        self._delimiter = b"--" + boundary.encode("latin-1")
        self._separator = b"\r\n" + self._delimiter
        self._buffer = bytearray()
        self._eof = False
        self._total = 0
        self._max = max_bytes
        self._done = False

    def _fill(self) -> bool:
        chunk = self._next()
        self._buffer += chunk
        return bool(chunk)

    def _next(self) -> bytes:
        """The next chunk of the body, b"" at its end."""
        if self._eof:
            return b""
        chunk = self._read(CHUNK_SIZE)
        if not chunk:
            self._eof = True
            return b""
        self._total += len(chunk)
        if self._total > self._max:
            raise BodyTooLarge(f"The body is larger than {self._max} bytes.")
        return chunk

    def parts(self) -> Iterator[Part]:
        self._skip_preamble()
        while not self._done:
            headers = self._headers()
            content_type = headers.get("content-type", "application/octet-stream")
            yield Part(content_type=content_type, spooled=self._body())

    def _skip_preamble(self) -> None:
        # The preamble is dropped as it arrives, but for what may start a delimiter: a body
        # of no boundary would otherwise sit whole in memory, searched again at each chunk.
        keep = len(self._delimiter) - 1
        while True:
            index = self._buffer.find(self._delimiter)
            if index >= 0:
                del self._buffer[: index + len(self._delimiter)]
                self._after_delimiter()
                return
            del self._buffer[: max(len(self._buffer) - keep, 0)]
            if not self._fill():
                raise MalformedMultipart("No opening boundary in the body.")

    def _after_delimiter(self) -> None:
        """After a delimiter: '--' ends the body, else optional padding and CRLF start a part."""
        while len(self._buffer) < 2 and self._fill():
            pass
        if self._buffer[:2] == b"--":
            self._done = True
            return
        while True:
            index = self._buffer.find(b"\r\n")
            if index >= 0:
                if self._buffer[:index].strip(b" \t"):
                    raise MalformedMultipart("Unexpected bytes after a boundary.")
                del self._buffer[: index + 2]
                return
            if len(self._buffer) > 1024 or not self._fill():
                raise MalformedMultipart("A boundary line does not end with CRLF.")

    def _headers(self) -> dict[str, str]:
        while True:
            if self._buffer.startswith(b"\r\n"):
                del self._buffer[:2]
                return {}
            # Only the allowed length is searched: headers whose end arrived in the same
            # chunk as their start are held to the limit too.
            index = self._buffer.find(b"\r\n\r\n", 0, _MAX_HEADER_BYTES + 4)
            if index >= 0:
                raw = bytes(self._buffer[:index]).decode("latin-1")
                del self._buffer[: index + 4]
                return _header_dict(raw)
            if len(self._buffer) >= _MAX_HEADER_BYTES + 4:
                raise MalformedMultipart("Part headers are too long.")
            if not self._fill():
                raise MalformedMultipart("The body ends inside part headers.")

    def _body(self) -> Spooled:
        writer = SpoolWriter()
        try:
            self._copy_body(writer)
        except BaseException:
            writer.abort()
            raise
        return writer.finish()

    def _write(self, writer: SpoolWriter, length: int) -> None:
        """The buffer's first bytes to the spool, without copying them first."""
        with memoryview(self._buffer) as view, view[:length] as body:
            writer.write(body)

    def _copy_body(self, writer: SpoolWriter) -> None:
        keep = len(self._separator) - 1
        while True:
            index = self._buffer.find(self._separator)
            if index >= 0:
                self._write(writer, index)
                del self._buffer[: index + len(self._separator)]
                self._after_delimiter()
                return
            if len(self._buffer) > keep:
                # Everything but a possible partial separator at the end is body.
                self._write(writer, len(self._buffer) - keep)
                del self._buffer[: len(self._buffer) - keep]
            chunk = self._next()
            if not chunk:
                raise MalformedMultipart("The body ends before the closing boundary.")
            if not self._pass_through(writer, chunk, keep=keep):
                self._buffer += chunk

    def _pass_through(self, writer: SpoolWriter, chunk: bytes, *, keep: int) -> bool:
        """Write a chunk that holds no separator straight from itself, not through the
        buffer (two copies less of a large body); False, writing nothing, when it may."""
        if len(chunk) <= keep or self._separator in chunk:
            return False
        if self._separator in self._buffer + chunk[:keep]:
            return False
        if self._buffer:
            writer.write(bytes(self._buffer))
        # A view of the immutable chunk: the spool may keep it queued without a copy.
        writer.write(memoryview(chunk)[: len(chunk) - keep])
        self._buffer = bytearray(chunk[len(chunk) - keep :])
        return True


def _header_dict(raw: str) -> dict[str, str]:
    headers = {}
    for line in raw.split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep:
            raise MalformedMultipart(f"Malformed part header line {line[:40]!r}.")
        headers[name.strip().lower()] = value.strip()
    return headers


def new_boundary() -> str:
    return f"anim-{secrets.token_hex(16)}"


def multipart_stream(
    parts: Iterable[tuple[str, Iterable[bytes]]], *, boundary: str
) -> Iterator[bytes]:
    """The body of a multipart/related response from (content type, chunks) pairs."""
    delimiter = f"--{boundary}".encode()
    for content_type, chunks in parts:
        yield delimiter + f"\r\nContent-Type: {content_type}\r\n\r\n".encode()
        yield from chunks
        yield b"\r\n"
    yield delimiter + b"--\r\n"
