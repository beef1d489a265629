"""Large objects on S3: upload, whole read and a range at the end, time and peak memory.

Starts moto's S3 server on loopback (its own process, so its memory is not counted), sets
the gateway's storage to it as STORAGE_BACKEND=s3 does, and for each size moves a spool file
of random bytes into storage, then reads it back two ways: through django-storages' own
S3File (what storage.object_chunks did before studies/s3.py) and through the gateway's
ranged reader. Memory is the peak of Python's allocations (tracemalloc) during each step,
after boto3's client was made:

    .venv/bin/python bench/bench_s3.py [--sizes 50,200] [--repeat 3]
"""

import argparse
import contextlib
import gc
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))

MiB = 1024 * 1024
CHUNK = 1024 * 1024
TAIL = 64 * 1024  # a last frame's worth


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="50,200", help="object sizes, MiB")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure (median printed)")
    return p.parse_args()


@contextlib.contextmanager
def moto_server(work: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=(work / "moto.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)


def setup_django(work: Path, endpoint: str) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="anim_gateway.settings",
        DEBUG="True",
        VAR_DIR=str(work / "var"),
        STORAGE_BACKEND="s3",
        AWS_STORAGE_BUCKET_NAME="anim-bench",
        AWS_S3_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID="anim-bench",
        AWS_SECRET_ACCESS_KEY="anim-bench-secret",
        AWS_DEFAULT_REGION="us-east-1",
    )
    import django

    django.setup()
    from studies import storage

    storage.storage().connection.meta.client.create_bucket(Bucket="anim-bench")


def measured(fn: Callable[[], object]) -> tuple[object, float, float]:
    """fn's result, its seconds and the peak MiB of Python's allocations while it ran."""
    gc.collect()
    tracemalloc.start()
    began = time.perf_counter()
    try:
        result = fn()
        return result, time.perf_counter() - began, tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()


def through_s3file(key: str, *, start: int = 0, length: int | None = None) -> tuple[int, float]:
    """django-storages' S3File read chunk by chunk (the gateway's reads before studies/s3.py):
    (bytes, seconds to the first chunk)."""
    from studies import storage

    began = time.perf_counter()
    first = None
    total = 0
    with storage.object_open(key=key) as fp:
        fp.seek(start)
        while length is None or total < length:
            chunk = fp.read(CHUNK if length is None else min(CHUNK, length - total))
            if not chunk:
                break
            first = first or time.perf_counter() - began
            total += len(chunk)
    return total, first or 0.0


def through_gateway(key: str, *, start: int = 0, length: int | None = None) -> tuple[int, float]:
    """storage.object_chunks, as WADO-RS, frames and fixity read: (bytes, seconds to the
    first chunk)."""
    from studies import storage

    began = time.perf_counter()
    first = None
    total = 0
    for chunk in storage.object_chunks(key=key, start=start, length=length):
        first = first or time.perf_counter() - began
        total += len(chunk)
    return total, first or 0.0


def source_file(work: Path, size: int) -> Path:
    """``size`` bytes of random MiB blocks in a file, written before any timing starts."""
    source = work / f"source-{size}-{time.time_ns()}.bin"
    with source.open("wb") as out:
        block = os.urandom(MiB)
        for _ in range(size // MiB):
            out.write(block)
    return source


def put(spooled) -> str:
    """The gateway's upload of a spool file (storage.object_put, as ingest stores)."""
    from studies import storage

    return storage.object_put(key=f"dicom/bench/{time.time_ns()}.dcm", spooled=spooled)


def put_through_django_storages(source: Path) -> str:
    """django-storages' own upload of the same file (a file object: boto3 reads ahead)."""
    from django.core.files import File
    from storages.backends.s3 import S3Storage

    with source.open("rb") as fp:
        return S3Storage().save(f"dicom/bench/plain/{time.time_ns()}.dcm", File(fp))


def main() -> int:
    args = parse_args()
    sizes = [int(s) * MiB for s in args.sizes.split(",") if s]
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as tmp:
        work = Path(tmp)
        with moto_server(work) as endpoint:
            setup_django(work, endpoint)
            print(f"moto_server at {endpoint}; median of {args.repeat} runs; memory: peak MiB")
            heads = ("MiB", 6), ("seconds", 8), ("MB/s", 7), ("first", 8), ("peak", 7)
            print(f"{'step':44s} " + " ".join(f"{h:>{w}s}" for h, w in heads))
            for size in sizes:
                bench_size(work, size, args.repeat)
    return 0


def bench_size(work: Path, size: int, repeat: int) -> None:
    from studies.spool import spool_path

    keys = []
    runs = []
    for _ in range(repeat):
        source = source_file(work, size)
        spooled = spool_path(source)
        source.unlink()
        key, seconds, peak = measured(lambda s=spooled: put(s))
        keys.append(key)
        runs.append((seconds, peak, 0.0))
    report("upload a spool file (studies.s3.S3Storage)", size, runs)
    runs = []
    for _ in range(repeat):
        source = source_file(work, size)
        _, seconds, peak = measured(lambda s=source: put_through_django_storages(s))
        source.unlink()
        runs.append((seconds, peak, 0.0))
    report("upload the file, django-storages S3Storage", size, runs)
    steps = [
        ("whole, django-storages S3File", through_s3file, {}),
        ("whole, ranged reader (studies.s3)", through_gateway, {}),
        ("last 64 KiB, django-storages S3File", through_s3file, {"start": size - TAIL}),
        ("last 64 KiB, ranged reader (studies.s3)", through_gateway, {"start": size - TAIL}),
    ]
    for label, read, kwargs in steps:
        runs = []
        for key in keys:
            (got, first), seconds, peak = measured(lambda k=key, r=read, a=kwargs: r(k, **a))
            assert got == size - kwargs.get("start", 0), (label, got)
            runs.append((seconds, peak, first))
        report(label, size if not kwargs else TAIL, runs)


def report(label: str, size: int, runs: list[tuple[float, float, float]]) -> None:
    seconds = statistics.median(r[0] for r in runs)
    peak = statistics.median(r[1] for r in runs)
    first = statistics.median(r[2] for r in runs)
    rate = size / seconds / 1e6
    print(
        f"{label:44s} {size / MiB:6.2f} {seconds:8.3f} {rate:7.1f} {first:8.3f} {peak:7.1f}",
        flush=True,
    )


if __name__ == "__main__":
    sys.exit(main())
