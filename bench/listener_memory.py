"""The DICOM listener's memory while several associations each send one large instance at once.

Sets up the `make run` configuration in a temporary VAR_DIR (SQLite, local storage, demo
institutions), writes N multi-frame CT instances of the given size, starts
`manage.py dicom_listener --processes 1`, sends them over N concurrent associations
(pynetdicom, PDUs as large as the listener takes) and prints the statuses and the
listener's resident memory before and at its peak (sampled every 10 ms):

    .venv/bin/python bench/listener_memory.py [--size-mib 200] [--associations 10]

The instances are written to the temporary folder first (N times the size), and stored
again by the listener: leave room for twice N times the size on disk.
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage

ROOT = Path(__file__).resolve().parents[1]
PORT = 11191
MIB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=200, help="size of each instance")
    p.add_argument("--associations", type=int, default=10, help="instances sent at once")
    return p.parse_args()


def manage(env: dict, *args: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True
    )


def write_instances(folder: Path, *, count: int, size_mib: int) -> list[Path]:
    """CT_small with enough zero frames to weigh size_mib, under new UIDs for each copy."""
    ds = dcmread(get_testdata_file("CT_small.dcm"))
    frames = size_mib * MIB // (ds.Rows * ds.Columns * 2)
    ds.NumberOfFrames = frames
    ds.PixelData = np.zeros((frames, ds.Rows, ds.Columns), dtype=np.uint16).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    paths = []
    for number in range(count):
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        paths.append(folder / f"large-{number}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def ensure_free(port: int) -> None:
    """Another listener on the port would be measured instead of ours."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            raise SystemExit(f"port {port} is taken: stop what listens there first") from exc


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_port(port: int) -> None:
    for _ in range(150):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the listener did not open port {port}")


class PeakRss:
    """The largest resident size of a process, sampled every 10 ms while in the block."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.before = self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)  # what the last association freed is not part of the peak
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.process.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.01)


def send(path: Path) -> int | None:
    ae = AE(ae_title="CHL_PACS")
    ae.add_requested_context(CTImageStorage, ExplicitVRLittleEndian)
    ae.maximum_pdu_size = 0  # the listener's own limit (4 MiB) sets the PDU size
    assoc = ae.associate("127.0.0.1", PORT, ae_title="ANIM_GATEWAY")
    if not assoc.is_established:
        return None
    status = assoc.send_c_store(path)
    assoc.release()
    return status.Status if status else None


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="listener_memory_"))
    env = dict(os.environ, DEBUG="True", VAR_DIR=str(work / "var"))
    ensure_free(PORT)
    try:
        manage(env, "migrate", "--no-input")
        manage(env, "seed_demo")
        paths = write_instances(work, count=args.associations, size_mib=args.size_mib)
        with (work / "listener.log").open("w") as log:
            listener = subprocess.Popen(
                [sys.executable, "manage.py", "dicom_listener", f"--port={PORT}", "--processes=1"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(PORT)
            time.sleep(1)  # settled
            with PeakRss(listener.pid) as rss, ThreadPoolExecutor(args.associations) as pool:
                begin = time.perf_counter()
                statuses = list(pool.map(send, paths))
                elapsed = time.perf_counter() - begin
        finally:
            stop(listener)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    growth = (rss.peak - rss.before) / MIB
    print(
        f"{args.associations} associations x {args.size_mib} MiB at once, load "
        f"{os.getloadavg()[0]:.2f}: statuses {sorted({hex(s) for s in statuses if s is not None})}"
        f" ({statuses.count(0)} stored) in {elapsed:.1f}s; listener RSS {rss.before / MIB:.1f}"
        f" MiB before, {rss.peak / MIB:.1f} MiB at its peak: {growth:.1f} MiB more,"
        f" {growth / args.associations:.1f} MiB per association"
    )
    return 0 if statuses.count(0) == len(statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
