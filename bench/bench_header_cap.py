"""What a header of many elements costs ingest, and what DICOM_MAX_HEADER_ELEMENTS bounds.

    .venv/bin/python bench/bench_header_cap.py [--abuse 600000] [--mr 1000,2000,2500]
        [--ct 2000,5000] [--limit N]

Builds the fuzzing review's file (``--abuse`` private elements of 10 bytes each) and
synthetic enhanced MR and CT headers (bench/dicom/crowded.py: the per-frame functional
groups a scanner writes, about 100 elements a frame for MR and 40 for CT), then ingests
each through the ingest service (import_dicom's path: read_header, the gate and its audit,
storage, the index) on SQLite, each file in a process of its own: wall time and the growth
of the process's peak resident memory. ``--limit`` sets DICOM_MAX_HEADER_ELEMENTS (the
default's otherwise); 0 for none (the cost of the uncapped ingest).
"""

import argparse
import json
import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

from dicom import sandbox

SETTING = "DICOM_MAX_HEADER_ELEMENTS"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--abuse", type=int, default=600_000)
    parser.add_argument("--mr", default="1000,2000,2500", help="frames of each enhanced MR")
    parser.add_argument("--ct", default="2000,5000", help="frames of each enhanced CT")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--child", nargs=2, metavar=("WORK", "FILE"), help=argparse.SUPPRESS)
    return parser.parse_args()


def child(file: Path) -> None:
    """Ingest one file and print what it cost."""
    row, _ = sandbox.ingest_timed(file)
    print(json.dumps(row))


def main() -> None:
    args = parse_args()
    started = sandbox.start(
        args.child, limit=args.limit, setting=SETTING, prefix="bench-cap-", child=child
    )
    if started is None:
        return
    work, env = started
    from dicom.crowded import count_elements, enhanced, private_elements
    from django.conf import settings

    files = [private_elements(work / "abuse.dcm", args.abuse)]
    for modality, frames in [("MR", args.mr), ("CT", args.ct)]:
        for n in [int(f) for f in frames.split(",") if f]:
            files.append(enhanced(work / f"e{modality}_{n}.dcm", modality=modality, frames=n))
    limit = settings.DICOM_MAX_HEADER_ELEMENTS
    print(f"bench_header_cap: work folder {work}, DICOM_MAX_HEADER_ELEMENTS {limit:,}")
    print(f"  {'file':<18}{'MiB':>7}{'elements':>11}  {'outcome':<9}{'s':>8}{'peak MiB':>10}")
    for file in files:
        elements = count_elements(file)
        row = sandbox.run_child(__file__, work, file, args.limit, env)
        size = file.stat().st_size / 2**20
        print(
            f"  {file.stem:<18}{size:7.1f}{elements:11,}  {row['status']:<9}"
            f"{row['seconds']:8.2f}{row['peak_mib']:10.0f}"
        )
    print(f"  (load average at the end: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
