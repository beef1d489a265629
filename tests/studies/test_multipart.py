"""The streaming multipart/related reader: boundaries across chunks, padding, malformed bodies."""

import io

import pytest

from studies import multipart
from studies.multipart import MalformedMultipart, MultipartReader, multipart_stream
from studies.storage_errors import StorageUnavailable


def _read(body: bytes, *, boundary: str = "b0undary", max_bytes: int = 10**9):
    reader = MultipartReader(io.BytesIO(body).read, boundary=boundary, max_bytes=max_bytes)
    parts = []
    for part in reader.parts():
        parts.append((part.content_type, part.spooled.path.read_bytes()))
        part.spooled.discard()
    return parts


@pytest.mark.parametrize("chunk", [1, 3, 7, 64, 1 << 20])
def test_it_splits_parts_whatever_the_chunk_size(settings, tmp_path, monkeypatch, chunk):
    settings.SPOOL_DIR = tmp_path
    monkeypatch.setattr(multipart, "CHUNK_SIZE", chunk)
    bodies = [b"first\r\n--b0und", b"", b"x" * 300 + b"\r\n"]
    data = b"".join(
        multipart_stream([("application/dicom", [b]) for b in bodies], boundary="b0undary")
    )
    assert _read(b"preamble\r\n" + data) == [("application/dicom", b) for b in bodies]
    assert list(tmp_path.iterdir()) == []


def test_it_round_trips_what_the_writer_writes(settings, tmp_path):
    settings.SPOOL_DIR = tmp_path
    payload = bytes(range(256)) * 1000
    data = b"".join(multipart_stream([("application/dicom", [payload])], boundary="xyz"))
    assert _read(data, boundary="xyz") == [("application/dicom", payload)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"no boundary at all", "No opening boundary"),
        (b"--b0undary\r\nContent-Type: a\r\n\r\nbody without end", "closing boundary"),
        (b"--b0undary\r\nno colon here\r\n\r\nx\r\n--b0undary--", "Malformed part header"),
        # 20 KB of headers, arriving with their end in one chunk: over the 16 KB limit.
        (
            b"--b0undary\r\nX-Pad: " + b"a" * 20_000 + b"\r\n\r\nx\r\n--b0undary--",
            "Part headers are too long",
        ),
    ],
)
def test_it_names_what_is_malformed(settings, tmp_path, body, message):
    settings.SPOOL_DIR = tmp_path
    with pytest.raises(MalformedMultipart, match=message):
        _read(body)
    assert list(tmp_path.iterdir()) == []


def test_it_stops_reading_past_the_maximum(settings, tmp_path):
    settings.SPOOL_DIR = tmp_path
    body = b"".join(multipart_stream([("application/dicom", [b"x" * 5000])], boundary="b0undary"))
    with pytest.raises(multipart.BodyTooLarge):
        _read(body, max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_a_spool_handed_to_the_kernel_while_written_keeps_every_byte(
    settings, tmp_path, monkeypatch
):
    import hashlib

    from studies import spool

    settings.SPOOL_DIR = tmp_path
    monkeypatch.setattr(spool, "WRITEBACK_BYTES", 1000)
    handed = []
    original = spool.SpoolWriter._start_writeback

    def counting(self):
        handed.append(self.size)
        original(self)

    monkeypatch.setattr(spool.SpoolWriter, "_start_writeback", counting)
    payload = bytes(range(256)) * 100
    spooled = spool.spool_chunks(payload[i : i + 700] for i in range(0, len(payload), 700))
    assert len(handed) > 10
    assert spooled.path.read_bytes() == payload
    assert spooled.sha256 == hashlib.sha256(payload).hexdigest()
    spooled.discard()


def test_a_large_spool_hashed_and_written_in_the_background_keeps_every_byte(
    settings, tmp_path, monkeypatch
):
    import hashlib
    import threading

    from studies import spool

    settings.SPOOL_DIR = tmp_path
    monkeypatch.setattr(spool, "BACKGROUND_AFTER", 1000)
    monkeypatch.setattr(spool, "WRITEBACK_BYTES", 3000)
    threads = []
    original = spool.SpoolWriter._consume

    def recording(self, chunk):
        threads.append(threading.current_thread())
        original(self, chunk)

    monkeypatch.setattr(spool.SpoolWriter, "_consume", recording)
    payload = bytes(range(256)) * 400
    spooled = spool.spool_chunks(payload[i : i + 700] for i in range(0, len(payload), 700))
    assert threads[0] is threading.main_thread()
    assert threads[-1] is not threading.main_thread()
    assert spooled.path.read_bytes() == payload
    assert (spooled.size, spooled.sha256) == (len(payload), hashlib.sha256(payload).hexdigest())
    spooled.discard()


def test_a_write_error_in_the_background_reaches_the_writer_and_leaves_no_spool(
    settings, tmp_path, monkeypatch
):
    from studies import spool

    settings.SPOOL_DIR = tmp_path
    monkeypatch.setattr(spool, "BACKGROUND_AFTER", 1000)
    original = spool.SpoolWriter._consume

    def failing(self, chunk):
        if self._written > 5000:
            raise OSError(28, "No space left on device")
        original(self, chunk)

    monkeypatch.setattr(spool.SpoolWriter, "_consume", failing)
    payload = bytes(100_000)
    with pytest.raises(StorageUnavailable, match="No space"):  # the disk, told as such
        spool.spool_chunks(payload[i : i + 700] for i in range(0, len(payload), 700))
    assert list(tmp_path.iterdir()) == []


def test_a_write_error_on_the_last_chunks_leaves_no_spool_either(settings, tmp_path, monkeypatch):
    """The error reaches the writer only when it finishes (the chunks were all queued)."""
    from studies import spool

    settings.SPOOL_DIR = tmp_path
    monkeypatch.setattr(spool, "BACKGROUND_AFTER", 1000)
    original = spool.SpoolWriter._consume
    payload = bytes(100_000)

    def failing_late(self, chunk):
        if self._written + len(chunk) >= len(payload):
            raise OSError(28, "No space left on device")
        original(self, chunk)

    monkeypatch.setattr(spool.SpoolWriter, "_consume", failing_late)
    writer = spool.SpoolWriter()
    for i in range(0, len(payload), 700):
        writer.write(payload[i : i + 700])
    with pytest.raises(StorageUnavailable, match="No space"):  # the disk, told as such
        writer.finish()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("chunk", [12, 13, 50, 4096, 65536])
def test_large_parts_written_straight_from_the_chunks_keep_every_byte(
    settings, tmp_path, monkeypatch, chunk
):
    import random

    settings.SPOOL_DIR = tmp_path
    monkeypatch.setattr(multipart, "CHUNK_SIZE", chunk)
    rng = random.Random(chunk)
    near = b"\r\n--b0undar"  # a separator but for its last byte
    filler = [b for b in range(256) if b != ord("y")]  # never completes one
    bodies = [
        b"".join(
            rng.choice([near, bytes([rng.choice(filler)]) * rng.randrange(1, 300)])
            for _ in range(400)
        )
        for _ in range(3)
    ]
    data = b"".join(
        multipart_stream([("application/dicom", [b]) for b in bodies], boundary="b0undary")
    )
    assert _read(data) == [("application/dicom", b) for b in bodies]


def test_a_long_preamble_is_skipped_without_being_held(settings, tmp_path):
    """A preamble is discarded as it arrives: a body of megabytes before its first boundary
    (or of none, up to STOW_MAX_BYTES) never sits whole in memory, nor is searched again at
    every chunk."""
    import tracemalloc

    settings.SPOOL_DIR = tmp_path
    preamble = b"p" * (16 * 1024 * 1024) + b"\r\n"
    parts = [("application/dicom", b"x" * 100)]
    body = preamble + b"".join(
        multipart_stream([(kind, [data]) for kind, data in parts], boundary="b0undary")
    )
    tracemalloc.start()
    try:
        assert _read(body) == parts
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * multipart.CHUNK_SIZE  # a chunk read and a chunk kept, not 16 MiB
