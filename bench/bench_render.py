"""Rendering one large frame (studies.dicom_render.render_frame): time and peak memory.

Builds an uncompressed 16-bit MONOCHROME2 instance (8192x8192 by default, 128 MiB of
pixels, with a rescale and a window as a CT has) in a temporary folder, then renders it to
JPEG from an open file, as the storage's reader hands it over, with no viewport and with a
512x512 one. Each rendering runs in its own process: the growth of the process's peak
resident set (VmHWM) over its peak after the imports, the wall time, then the peak of
Python's allocations (tracemalloc, numpy's included) during a second rendering:

    .venv/bin/python bench/bench_render.py [--side 8192] [--viewports none,512x512]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MiB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--side", type=int, default=8192, help="rows and columns of the frame")
    p.add_argument("--viewports", default="none,512x512", help="comma-separated, WxH or none")
    p.add_argument("--measure", help=argparse.SUPPRESS)  # internal: one rendering, JSON out
    return p.parse_args()


def build_instance(path: Path, side: int) -> None:
    """A synthetic CT-like frame: a gradient with noise, written without pydicom's checks."""
    import numpy as np
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "CT"
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 40, 400
    rng = np.random.default_rng(0)
    rows = np.linspace(0, 3000, side, dtype=np.float32)[:, None]
    pixels = (rows + rng.integers(0, 200, (side, side), dtype=np.uint16)).astype(np.uint16)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)


def measure(path: Path, viewport: tuple[int, int] | None) -> dict:
    """In this process: one rendering for RSS and time, a second one under tracemalloc."""
    from dicom.measure import django_ready, once_then_traced

    django_ready(var_dir=path.parent / "var", root=ROOT)
    import io

    from PIL import Image

    from studies.dicom_render import render_frame

    def render() -> bytes:
        with path.open("rb") as fp:
            return render_frame(fp, index=0, media_type="image/jpeg", viewport=viewport)

    figures = once_then_traced(render)  # after the imports
    size = Image.open(io.BytesIO(figures.pop("result"))).size
    return {**figures, "size": size}


def main() -> None:
    args = parse_args()
    if args.measure:
        path, viewport = args.measure.split("|")
        vp = None if viewport == "none" else tuple(int(v) for v in viewport.split("x"))
        print(json.dumps(measure(Path(path), vp)))
        return
    module = ROOT / "studies" / "dicom_render.py"
    print(f"render_frame of {module} ({os.getloadavg()[0]:.2f} load)")
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "large.dcm"
        build_instance(path, args.side)
        frame_mib = args.side * args.side * 2 / MiB
        print(f"frame {args.side}x{args.side} 16-bit, {frame_mib:.0f} MiB of pixels")
        for viewport in args.viewports.split(","):
            done = subprocess.run(
                [sys.executable, __file__, "--measure", f"{path}|{viewport}"],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            )
            r = json.loads(done.stdout.splitlines()[-1])
            print(
                f"viewport {viewport:>9}: {r['seconds']:6.2f} s, "
                f"peak RSS +{r['rss'] / MiB:5.0f} MiB (over {r['base'] / MiB:.0f}), "
                f"tracemalloc peak {r['traced'] / MiB:5.0f} MiB "
                f"({r['traced'] / (frame_mib * MiB):4.1f}x the frame), "
                f"output {r['size'][0]}x{r['size'][1]}"
            )


if __name__ == "__main__":
    main()
