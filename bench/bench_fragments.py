"""What an encapsulated Pixel Data of many tiny fragments costs ingest, and a frame's read.

    .venv/bin/python bench/bench_fragments.py [--fragments 1000000,5000000,20000000]
        [--size 8] [--limit N]

Builds single-frame JPEG Baseline instances whose Pixel Data is an empty Basic Offset Table
and ``--fragments`` items of ``--size`` bytes each (an Item tag, its length, no or few
bytes: what a crafted sender, or a broken modality, could send well within STOW_MAX_BYTES),
then ingests each through the ingest service (import_dicom's path: read_header, the gate
and its audit, storage, the index) on SQLite, each file in a process of its own: wall time
and the growth of the process's peak resident memory; and, when it was stored, the read of
its one frame as /frames and /rendered read it (studies.dicom.read_frame: pydicom's
get_frame, which joins every fragment of a single frame). ``--limit`` sets
DICOM_MAX_PIXEL_FRAGMENTS (the default's otherwise); 0 for none (the uncapped cost).
"""

import argparse
import json
import os
import struct
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from dicom import sandbox

SETTING = "DICOM_MAX_PIXEL_FRAGMENTS"

ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
SEQUENCE_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fragments", default="1000000,5000000,20000000")
    parser.add_argument("--size", type=int, default=0, help="bytes of each fragment's value")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--child", nargs=2, metavar=("WORK", "FILE"), help=argparse.SUPPRESS)
    return parser.parse_args()


def fragmented(path: Path, fragments: int, size: int) -> Path:
    """A JPEG Baseline single-frame instance whose Pixel Data is ``fragments`` items of
    ``size`` bytes after an empty Basic Offset Table."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientID, ds.Modality = "FRAG1", "OT"
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.save_as(path, enforce_file_format=True)
    item = ITEM + struct.pack("<L", size) + b"\xff" * size
    with path.open("ab") as fp:
        fp.write(struct.pack("<HH", 0x7FE0, 0x0010) + b"OB\0\0" + struct.pack("<L", 0xFFFFFFFF))
        fp.write(ITEM + struct.pack("<L", 0))  # the Basic Offset Table, empty
        chunk = 1_000_000
        for start in range(0, fragments, chunk):
            fp.write(item * min(chunk, fragments - start))
        fp.write(SEQUENCE_END)
    return path


def child(file: Path) -> None:
    """Ingest one file, read its frame when it was stored, and print what each cost."""
    row, result = sandbox.ingest_timed(file)
    if result.status == "stored":
        row.update(_frame_read(file, result.sop_instance_uid))
    print(json.dumps(row))


def _frame_read(file: Path, sop_instance_uid: str) -> dict:
    """The read of the file's one frame as /frames and /rendered read it."""
    from dicom.measure import timed_rss

    from studies.dicom import read_frame
    from studies.models import Instance

    instance = Instance.objects.get(sop_instance_uid=sop_instance_uid)
    frames = []

    def read() -> None:
        with file.open("rb") as fp:
            frames.append(
                read_frame(
                    fp,
                    transfer_syntax_uid=instance.transfer_syntax_uid,
                    offset=instance.pixel_data_offset,
                    index=0,
                    number_of_frames=instance.number_of_frames,
                    frame_size=0,
                )
            )

    frame = timed_rss(read)
    return {"frame_seconds": frame.seconds, "frame_peak_mib": frame.peak_bytes / 2**20}


def main() -> None:
    args = parse_args()
    started = sandbox.start(
        args.child, limit=args.limit, setting=SETTING, prefix="bench-fragments-", child=child
    )
    if started is None:
        return
    work, env = started
    from django.conf import settings

    limit = getattr(settings, "DICOM_MAX_PIXEL_FRAGMENTS", None)
    print(f"bench_fragments: work folder {work}, DICOM_MAX_PIXEL_FRAGMENTS {limit}")
    print(
        f"  {'fragments':>11}{'MiB':>8}  {'outcome':<9}{'s':>8}{'peak MiB':>10}"
        f"{'frame s':>9}{'frame MiB':>11}"
    )
    for count in [int(n) for n in args.fragments.split(",") if n]:
        file = fragmented(work / f"fragments_{count}.dcm", count, args.size)
        row = sandbox.run_child(__file__, work, file, args.limit, env)
        size = file.stat().st_size / 2**20
        frame = (
            f"{row['frame_seconds']:9.2f}{row['frame_peak_mib']:11.0f}"
            if "frame_seconds" in row
            else f"{'-':>9}{'-':>11}"
        )
        print(
            f"  {count:11,}{size:8.1f}  {row['status']:<9}{row['seconds']:8.2f}"
            f"{row['peak_mib']:10.0f}{frame}"
        )
        if row["status"] != "stored":
            print(f"    {row['reason']}")
        file.unlink()
    print(f"  (load average at the end: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
