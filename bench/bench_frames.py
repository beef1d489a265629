"""Decoding one frame of a large compressed multi-frame instance (studies.dicom_decode).

Builds, in a temporary folder, a JPEG baseline instance of ``--frames`` copies of one
8-bit ``--side`` x ``--side`` greyscale noise frame (Pillow, quality 90), written a frame
at a time, with or without a Basic Offset Table (``--no-bot``: pydicom then walks the
fragments to the frame). Then, each in its own process, decodes the frame asked (the last
by default: the furthest from the start) from an open file, as the storage's reader hands
it over, as /frames does for a client that asks for uncompressed octets: the wall time,
the growth of the process's peak resident set (VmHWM) over its peak after the imports,
then the peak of Python's allocations (tracemalloc, numpy's included) during a second
decoding:

    .venv/bin/python bench/bench_frames.py [--side 2048] [--frames 200] [--frame N] [--no-bot]
"""

import argparse
import io
import json
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MiB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", type=int, default=2048, help="rows and columns of each frame")
    p.add_argument("--frames", type=int, default=200, help="number of frames")
    p.add_argument("--frame", type=int, default=0, help="the frame decoded, 1-based (last)")
    p.add_argument("--no-bot", action="store_true", help="an empty Basic Offset Table")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one decoding, JSON out
    return p.parse_args()


def jpeg_frame(side: int) -> bytes:
    """A greyscale JPEG of noise: it compresses little, as a large frame's detail does."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side), dtype=np.uint8), "L").save(
        out, format="JPEG", quality=90
    )
    data = out.getvalue()
    return data + b"\0" * (len(data) % 2)  # items have an even length


def build_instance(path: Path, *, side: int, frames: int, bot: bool) -> int:
    """The header by pydicom, then Pixel Data's items written one frame at a time (never
    the whole instance in memory); its size in bytes."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import JPEGBaseline8Bit, SecondaryCaptureImageStorage, generate_uid

    frame = jpeg_frame(side)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, generate_uid()
    ds.Modality = "OT"
    ds.Rows = ds.Columns = side
    ds.NumberOfFrames = frames
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.save_as(path, enforce_file_format=True)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, len(frame))
    with path.open("ab") as out:
        out.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF))
        offsets = [n * (8 + len(frame)) for n in range(frames)] if bot else []
        out.write(struct.pack("<HHI", 0xFFFE, 0xE000, 4 * len(offsets)))
        out.write(struct.pack(f"<{len(offsets)}I", *offsets))
        for _ in range(frames):
            out.write(item + frame)
        out.write(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0))
    return path.stat().st_size


def measure(path: Path, index: int) -> dict:
    """In this process: one decoding for RSS and time, a second one under tracemalloc."""
    from dicom.measure import django_ready, once_then_traced

    django_ready(var_dir=path.parent / "var", root=ROOT)

    from studies.dicom_decode import decoded_frame

    def decode() -> bytes:
        with path.open("rb") as fp:
            return decoded_frame(fp, index=index)

    figures = once_then_traced(decode)  # after the imports
    size = len(figures.pop("result"))
    return {**figures, "size": size}


def main() -> None:
    args = parse_args()
    if args.measure:
        path, index = args.measure.split("|")
        print(json.dumps(measure(Path(path), int(index))))
        return
    module = ROOT / "studies" / "dicom_decode.py"
    print(f"decoded_frame of {module} ({os.getloadavg()[0]:.2f} load)")
    number = args.frame or args.frames
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "large.dcm"
        size = build_instance(path, side=args.side, frames=args.frames, bot=not args.no_bot)
        table = "no offset table" if args.no_bot else "a Basic Offset Table"
        print(
            f"instance: {args.frames} JPEG baseline frames {args.side}x{args.side} 8-bit, "
            f"{size / MiB:.0f} MiB, {table}; decoding frame {number}"
        )
        done = subprocess.run(
            [sys.executable, __file__, "--measure", f"{path}|{number - 1}"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        r = json.loads(done.stdout.splitlines()[-1])
        print(
            f"{r['seconds']:6.3f} s, peak RSS +{r['rss'] / MiB:5.1f} MiB "
            f"(over {r['base'] / MiB:.0f}), tracemalloc peak {r['traced'] / MiB:5.1f} MiB, "
            f"decoded frame {r['size'] / MiB:.1f} MiB"
        )


if __name__ == "__main__":
    main()
