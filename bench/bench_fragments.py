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
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

ITEM = struct.pack("<HH", 0xFFFE, 0xE000)
SEQUENCE_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fragments", default="1000000,5000000,20000000")
    parser.add_argument("--size", type=int, default=0, help="bytes of each fragment's value")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--child", nargs=2, metavar=("WORK", "FILE"), help=argparse.SUPPRESS)
    return parser.parse_args()


def environment(work: Path, limit: int | None) -> dict:
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="anim_gateway.settings",
        SECRET_KEY="bench-only-secret",
        VAR_DIR=str(work),
        ALLOWED_HOSTS="testserver",
        DATABASE_URL=f"sqlite:///{work / 'bench.sqlite3'}",
    )
    env.pop("CELERY_BROKER_URL", None)
    if limit is not None:
        env["DICOM_MAX_PIXEL_FRAGMENTS"] = str(limit or 2**62)
    return env


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


def child(work: Path, file: Path) -> None:
    """Ingest one file (a copy spooled first, as every door does), read its frame when it
    was stored, and print what each cost."""
    import django

    django.setup()
    from dicom.measure import timed_rss

    from consent.actors import Actor
    from consent.models import Institution
    from studies.dicom import read_frame
    from studies.ingest import IngestSession, instance_ingest
    from studies.models import Instance
    from studies.spool import spool_path

    actor = Actor(role="system", institution=Institution.objects.get(code="CHL"), channel="cli")
    session = IngestSession(actor=actor)
    spooled = spool_path(file)
    results = []
    run = timed_rss(lambda: results.append(instance_ingest(session=session, spooled=spooled)))
    result = results[0]
    row = {
        "status": result.status,
        "reason": result.reason[:90],
        "seconds": run.seconds,
        "peak_mib": run.peak_bytes / 2**20,
    }
    if result.status == "stored":
        instance = Instance.objects.get(sop_instance_uid=result.sop_instance_uid)
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
        row.update(frame_seconds=frame.seconds, frame_peak_mib=frame.peak_bytes / 2**20)
    print(json.dumps(row))


def main() -> None:
    args = parse_args()
    if args.child:
        os.environ.update(environment(Path(args.child[0]), args.limit))
        child(Path(args.child[0]), Path(args.child[1]))
        return
    work = Path(tempfile.mkdtemp(prefix="bench-fragments-"))
    env = environment(work, args.limit)
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from consent.services import provisioning

    call_command("migrate", verbosity=0)
    provisioning.institution_create(code="CHL", name="CHL", ae_titles=["CHL_PACS"])
    limit = getattr(settings, "DICOM_MAX_PIXEL_FRAGMENTS", None)
    print(f"bench_fragments: work folder {work}, DICOM_MAX_PIXEL_FRAGMENTS {limit}")
    print(
        f"  {'fragments':>11}{'MiB':>8}  {'outcome':<9}{'s':>8}{'peak MiB':>10}"
        f"{'frame s':>9}{'frame MiB':>11}"
    )
    for count in [int(n) for n in args.fragments.split(",") if n]:
        file = fragmented(work / f"fragments_{count}.dcm", count, args.size)
        out = subprocess.run(
            [sys.executable, __file__, "--child", str(work), str(file)]
            + ([] if args.limit is None else ["--limit", str(args.limit)]),
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
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
