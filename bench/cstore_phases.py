"""C-STORE phase by phase, gateway and Orthanc: associate, first and second store, release.

bench_vs_orthanc.py gives the C-STORE rate with concurrent clients; this one sends one
study of two instances per association, one association at a time, and prints the median
client-side time of each phase for both servers, so that the gap can be placed (the
association, a study's first instance with its gate decision, a following instance):

    .venv/bin/python bench/cstore_phases.py [--studies 100]

Same set-up as bench_vs_orthanc.py (PostgreSQL database `bench_dicom` recreated, Orthanc
from Debian's packages on its own temporary storage, the listener through
bench/orthanc/listener.py; BENCH_LISTENER_PROCESSES sets its process count).
"""

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from orthanc import clients, corpus, measure, orthanc_server
from orthanc import gateway as gw

PHASES = ("associate", "store 1st", "store 2nd", "release", "association total")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=int, default=100, help="studies (associations) per server")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    return p.parse_args()


def send_studies(studies: list, *, port: int, called: str) -> dict[str, float]:
    """Median milliseconds of each phase, one association per two-instance study."""
    from pynetdicom import AE

    times: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for study in studies:
        files = [(str(i.path), *clients.read_meta(str(i.path))) for i in study.items[:2]]
        ae = AE(ae_title="CHL_PACS")
        for sop_class, syntax in sorted({(c, t) for _, c, t in files}):
            ae.add_requested_context(sop_class, [syntax])
        marks = [time.perf_counter()]
        assoc = ae.associate("127.0.0.1", port, ae_title=called)
        marks.append(time.perf_counter())
        if not assoc.is_established:
            raise RuntimeError(f"association to port {port} refused")
        for path, _, _ in files:
            status = assoc.send_c_store(Path(path))
            if not status or status.Status != 0x0000:
                raise RuntimeError(f"C-STORE to port {port} failed: {status}")
            marks.append(time.perf_counter())
        assoc.release()
        marks.append(time.perf_counter())
        spans = [b - a for a, b in itertools.pairwise(marks)] + [marks[-1] - marks[0]]
        for phase, span in zip(PHASES, spans, strict=True):
            times[phase].append(span * 1000)
    return {phase: statistics.median(values) for phase, values in times.items()}


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="cstore_phases_"))
    env = gw.environment(work / "gateway", http_port=8143, dicom_port=11143, pg=args.pg)
    gw.recreate_database(args.pg)
    gw.setup_django(env)
    parties = gw.provision(10)
    plugin = orthanc_server.ensure_installed()
    orthanc = orthanc_server.Orthanc(work / "orthanc", http_port=8142, dicom_port=4343)
    gateway = gw.Gateway(env, http_port=8143, dicom_port=11143, workers=1)
    (work / "logs").mkdir()
    small, _ = corpus.build_small(
        work / "corpus",
        instances=4 * args.studies,
        per_study=2,
        patient_ids=parties["patient_ids"],
    )
    clients.enable_tcp_nodelay()
    try:
        orthanc.start(plugin)
        gateway.start(work / "logs")
        half = len(small) // 2
        results = {
            "Orthanc": send_studies(small[:half], port=4343, called="ORTHANC"),
            "gateway": send_studies(small[half:], port=11143, called="ANIM_GATEWAY"),
        }
    finally:
        gateway.stop()
        orthanc.stop()
    print(f"C-STORE phases, median ms over {half} associations each; load {measure.load_average()}")
    print(f"{'phase':<20}{'gateway':>10}{'Orthanc':>10}{'gw/Orthanc':>12}")
    for phase in PHASES:
        ours, theirs = results["gateway"][phase], results["Orthanc"][phase]
        print(f"{phase:<20}{ours:>10.2f}{theirs:>10.2f}{ours / theirs:>11.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
