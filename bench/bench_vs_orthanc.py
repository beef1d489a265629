"""Gateway vs Orthanc (DICOMweb plugin): ingest, QIDO, WADO, large instances; ratios printed.

Installs Orthanc from Debian's packages if missing, starts it and the gateway (gunicorn on a
dedicated PostgreSQL database ``bench_dicom``, dropped and recreated; the gate and the audit
on), loads the same corpus into both, and prints one table (see bench/README.md):

    .venv/bin/python bench/bench_vs_orthanc.py [--instances 2000] [--synthetic 100000]
"""

import argparse
import datetime
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from orthanc import clients, corpus, measure, orthanc_server
from orthanc import gateway as gw

MB = 1024 * 1024


@dataclass
class Row:
    """One line of the table: a figure for each server, how to judge it, and the load then."""

    label: str
    gateway: float
    orthanc: float | None
    unit: str
    target: str = ""
    met: bool | None = None
    load: str = field(default_factory=measure.load_average)

    @property
    def ratio(self) -> float | None:
        if self.orthanc in (None, 0) or self.gateway != self.gateway:
            return None
        return self.gateway / self.orthanc


@dataclass
class Context:
    args: argparse.Namespace
    work: Path
    orthanc: orthanc_server.Orthanc
    gateway: gw.Gateway
    gw_web: clients.DicomWeb
    gw_store: clients.DicomWeb
    or_web: clients.DicomWeb
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    profiler: subprocess.Popen | None = None
    query_counts: list[tuple] = field(default_factory=list)

    def log(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S', time.gmtime())}Z] {text}", flush=True)

    def profile_start(self, phase: str, pid: int | None = None) -> None:
        """py-spy the gateway's gunicorn tree (or ``pid``) during a phase (--profile DIR)."""
        if not self.args.profile:
            return
        out = Path(self.args.profile) / f"{phase}.txt"
        pyspy = Path(sys.executable).with_name("py-spy")
        self.profiler = subprocess.Popen(
            [
                str(pyspy),
                "record",
                "--pid",
                str(pid or self.gateway.pid),
                "--subprocesses",
                # Waiting threads too (where a request's time goes), unless only CPU is asked.
                *(["--idle"] if os.environ.get("BENCH_PROFILE_IDLE", "1") == "1" else []),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1.5)

    def profile_stop(self) -> None:
        if self.profiler is not None:
            self.profiler.send_signal(signal.SIGINT)
            try:
                self.profiler.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.profiler.kill()
            self.profiler = None


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--instances", type=int, default=2000, help="small instances (half STOW-RS, half C-STORE)"
    )
    p.add_argument("--per-study", type=int, default=2, help="instances per small study")
    p.add_argument("--patients", type=int, default=100, help="bench patients (CHL identifiers)")
    p.add_argument("--large", default="50,100,200", help="large instance sizes, MiB")
    p.add_argument("--batch", type=int, default=20, help="instances per STOW-RS request")
    p.add_argument("--concurrency", type=int, default=2, help="parallel clients for ingest")
    p.add_argument("--repeat", type=int, default=60, help="requests per latency figure")
    p.add_argument("--synthetic", type=int, default=100_000, help="synthetic studies (0: skip)")
    p.add_argument(
        "--synthetic-visible",
        type=float,
        default=0.1,
        help="share of them that belong to the reader's patients",
    )
    p.add_argument("--workers", type=int, default=4, help="gunicorn workers")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432", help="PostgreSQL URL")
    p.add_argument("--orthanc-http", type=int, default=8142)
    p.add_argument("--orthanc-dicom", type=int, default=4343)
    p.add_argument("--gateway-http", type=int, default=8143)
    p.add_argument("--gateway-dicom", type=int, default=11143)
    p.add_argument("--workdir", help="temporary folder (default: a new one under /tmp)")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    p.add_argument("--profile", help="folder for py-spy raw profiles of the gateway per phase")
    return p.parse_args()


def _batches(studies: list[corpus.StudySpec], size: int) -> list[list[str]]:
    paths = [item.path for s in studies for item in s.items]
    return [paths[i : i + size] for i in range(0, len(paths), size)]


def _run_parallel(fn: Callable, jobs: list, concurrency: int) -> tuple[float, list]:
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(fn, jobs))
    return time.perf_counter() - start, results


# Studies kept out of the measured corpus and stored first, the same on both servers: a
# server runs warm in production, and the gateway's first request on each of its threads
# (4 per worker) opens that thread's database connection and prepares its statements.
WARM_STUDIES = 16


def warm_up(ctx: Context, warm: list[corpus.StudySpec]) -> None:
    """Concurrent reads and stores on each server, so every worker thread has its
    connection open and the ingest path has run once."""
    for web in (ctx.gw_web, ctx.or_web):
        jobs = [web] * (4 * ctx.args.workers)
        _run_parallel(lambda w: w.qido("studies", {"limit": 1}), jobs, 4)
    batches = _batches(warm, 2)
    for web in (ctx.gw_store, ctx.or_web):
        _run_parallel(web.stow, batches, len(batches))


def bench_stow_small(ctx: Context, studies: list[corpus.StudySpec]) -> None:
    batches = _batches(studies, ctx.args.batch)
    count = sum(len(b) for b in batches)
    megabytes = sum(s.size for s in studies) / MB
    rates, complete = {}, True
    for name, web in (("orthanc", ctx.or_web), ("gateway", ctx.gw_store)):
        if name == "gateway":
            ctx.profile_start("stow_small")
        with measure.CpuMeter(ctx.gateway.pid if name == "gateway" else ctx.orthanc.pid) as cpu:
            elapsed, results = _run_parallel(web.stow, batches, ctx.args.concurrency)
        if name == "gateway":
            ctx.profile_stop()
        failed = sum(f for _, f in results)
        complete = complete and not failed
        statuses = sorted({s for s, _ in results})
        rates[name] = (count - failed) / elapsed
        ctx.log(
            f"STOW-RS small {name}: {count} instances ({megabytes:.1f} MB) in {elapsed:.1f}s,"
            f" {failed} failed, HTTP {statuses}; {cpu.per_item_ms(count)}"
        )
        if failed:
            ctx.notes.append(f"STOW-RS small: {name} refused {failed} of {count} instances")
    ctx.rows.append(
        Row(
            f"STOW-RS small ingest ({ctx.args.batch}/request, {ctx.args.concurrency} clients)",
            rates["gateway"],
            rates["orthanc"],
            "inst/s",
            ">= 1x" if complete else "invalid: failures",
            rates["gateway"] >= rates["orthanc"] if complete else None,
        )
    )


def bench_cstore(ctx: Context, studies: list[corpus.StudySpec]) -> None:
    jobs = [[(item.path, *clients.read_meta(item.path)) for item in s.items] for s in studies]
    count = sum(len(j) for j in jobs)
    rates, complete = {}, True
    targets = {
        "orthanc": dict(port=ctx.orthanc.dicom_port, calling="BENCH_SCU", called=ctx.orthanc.aet),
        "gateway": dict(port=ctx.gateway.dicom_port, calling="CHL_PACS", called="ANIM_GATEWAY"),
    }
    for name, target in targets.items():

        def send(files: list, target: dict = target) -> tuple[int, int]:
            return clients.cstore_study(files, host="127.0.0.1", **target)

        if name == "gateway":
            ctx.profile_start("cstore_small", ctx.gateway.listener_pid)
        server = ctx.gateway.listener_pid if name == "gateway" else ctx.orthanc.pid
        with measure.CpuMeter(server) as cpu:
            elapsed, results = _run_parallel(send, jobs, ctx.args.concurrency)
        ctx.profile_stop()
        stored = sum(s for s, _ in results)
        rates[name] = stored / elapsed
        complete = complete and stored == count
        ctx.log(
            f"C-STORE {name}: {stored}/{count} stored in {elapsed:.1f}s ({len(jobs)} associations);"
            f" {cpu.per_item_ms(count)}"
        )
        if stored < count:
            ctx.notes.append(f"C-STORE: {name} stored {stored} of {count} instances")
    ctx.rows.append(
        Row(
            f"C-STORE small ingest (1 association/study, {ctx.args.concurrency} clients)",
            rates["gateway"],
            rates["orthanc"],
            "inst/s",
            # A run where either server lost an instance (a client timeout, say) judges nothing.
            ">= 1x" if complete else "invalid: failures",
            rates["gateway"] >= rates["orthanc"] if complete else None,
        )
    )


def _latency_pair(
    ctx: Context,
    label: str,
    calls: list[Callable[[clients.DicomWeb], object]],
    target: float | None,
    compare: bool = True,
) -> None:
    """Each call once per server, interleaved in order; a p50 row and a p95 row."""
    timings: dict[str, list[float]] = {"gateway": [], "orthanc": []}
    answers: dict[str, list] = {"gateway": [], "orthanc": []}
    for web in (ctx.gw_web, ctx.or_web):  # warm-up
        calls[0](web)
    for call in calls:
        for name, web in (("gateway", ctx.gw_web), ("orthanc", ctx.or_web)):
            start = time.perf_counter()
            answers[name].append(call(web))
            timings[name].append(time.perf_counter() - start)
    g, o = measure.summary_ms(timings["gateway"]), measure.summary_ms(timings["orthanc"])
    if compare and answers["gateway"] != answers["orthanc"]:
        differ = sum(a != b for a, b in zip(answers["gateway"], answers["orthanc"], strict=True))
        ctx.notes.append(
            f"{label}: result sizes differ in {differ}/{len(calls)} requests "
            f"(gateway {answers['gateway'][:3]}..., Orthanc "
            f"{answers['orthanc'][:3]}...)"
        )
    for q in ("p50", "p95"):
        ratio_ok = None if target is None else g[q] <= target * o[q]
        tgt = "" if target is None else f"<= {target:g}x"
        if q == "p95" and target is not None:
            tgt, ratio_ok = f"({tgt})", g[q] <= target * o[q]
        ctx.rows.append(Row(f"{label} {q} (n={g['n']})", g[q], o[q], "ms", tgt, ratio_ok))
    ctx.log(f"{label}: gateway p50 {g['p50']:.1f} ms, Orthanc p50 {o['p50']:.1f} ms")


def bench_qido(ctx: Context, studies: list[corpus.StudySpec], patient_ids: list[str]) -> None:
    rng = random.Random(3)
    n = ctx.args.repeat
    ids = [rng.choice(patient_ids) for _ in range(n)]
    _latency_pair(
        ctx,
        "QIDO studies by PatientID",
        [lambda w, p=p: w.qido("studies", {"PatientID": p}) for p in ids],
        0.5,
    )
    ranges = []
    for _ in range(n):
        start = corpus.FIRST_DATE + datetime.timedelta(days=rng.randrange(corpus.DAYS - 92))
        end = start + datetime.timedelta(days=91)
        ranges.append(f"{start:%Y%m%d}-{end:%Y%m%d}")
    _latency_pair(
        ctx,
        "QIDO studies by StudyDate range (3 months, limit 100)",
        [lambda w, r=r: w.qido("studies", {"StudyDate": r, "limit": 100}) for r in ranges],
        0.5,
    )
    pages = max(1, len(studies) // 50)
    offsets = [50 * rng.randrange(min(pages, 20)) for _ in range(n)]
    _latency_pair(
        ctx,
        "QIDO studies paged (limit 50, offset 0..950)",
        [lambda w, o=o: w.qido("studies", {"limit": 50, "offset": o}) for o in offsets],
        0.5,
    )


def bench_wado_small(ctx: Context, studies: list[corpus.StudySpec]) -> None:
    rng = random.Random(4)
    picks = [rng.choice(studies) for _ in range(ctx.args.repeat * 2)]
    paths = []
    for s in picks:
        item = rng.choice(s.items)
        paths.append(clients.instance_path(s.study_uid, s.series_uid, item.sop_uid))
    ctx.profile_start("wado_small")
    _latency_pair(
        ctx,
        "WADO-RS small instance",
        [lambda w, p=p: w.retrieve(p) for p in paths],
        1.5,
        compare=False,  # multipart part headers differ by a few bytes
    )
    ctx.profile_stop()
    uids = [rng.choice(studies).study_uid for _ in range(ctx.args.repeat)]
    _latency_pair(
        ctx,
        "WADO-RS study /metadata",
        [lambda w, u=u: w.metadata(u) for u in uids],
        None,
    )


def bench_large(ctx: Context, large: list[corpus.StudySpec]) -> None:
    servers = (
        ("gateway", ctx.gw_store, ctx.gw_web, [ctx.gateway.pid]),
        ("orthanc", ctx.or_web, ctx.or_web, [ctx.orthanc.pid]),
    )
    for spec in large:
        item = spec.items[0]
        size = item.size / MB
        stow: dict[str, tuple[float, int]] = {}
        wado: dict[str, tuple[float, int]] = {}
        for name, store, read, pids in servers:
            ctx.profile_start(f"stow_large_{spec.template}") if name == "gateway" else None
            with measure.RssSampler(pids) as rss:
                start = time.perf_counter()
                status, failed = store.stow([item.path])
                elapsed = time.perf_counter() - start
            ctx.profile_stop()
            if failed or status >= 400:
                ctx.notes.append(f"large STOW {spec.template}: {name} answered {status}")
            stow[name] = (size / elapsed, rss.growth)
            levels = f"RSS {rss.baseline / MB:.0f}->{rss.peak / MB:.0f} MB"
            path = clients.instance_path(spec.study_uid, spec.series_uid, item.sop_uid)
            ctx.profile_start(f"wado_large_{spec.template}") if name == "gateway" else None
            with measure.RssSampler(pids) as rss:
                start = time.perf_counter()
                got = read.retrieve(path)
                elapsed = time.perf_counter() - start
            ctx.profile_stop()
            wado[name] = (size / elapsed, rss.growth)
            levels += f", {rss.baseline / MB:.0f}->{rss.peak / MB:.0f} MB"
            ctx.log(
                f"large {spec.template} {name}: STOW {stow[name][0]:.1f} MB/s "
                f"(+{stow[name][1] / MB:.0f} MB RSS), WADO {wado[name][0]:.1f} MB/s "
                f"(+{wado[name][1] / MB:.0f} MB RSS, {got / MB:.1f} MB body); "
                f"process tree {levels} (STOW, WADO)"
            )
        mb = spec.template.split("-")[1]
        g, o = stow["gateway"], stow["orthanc"]
        ctx.rows.append(
            Row(f"STOW-RS large {mb} throughput", g[0], o[0], "MB/s", ">= 3x", g[0] >= 3 * o[0])
        )
        ctx.rows.append(
            Row(
                f"STOW-RS large {mb} server RSS growth",
                g[1] / MB,
                o[1] / MB,
                "MB",
                "flat (< 50 MB)",
                g[1] < 50 * MB,
            )
        )
        g, o = wado["gateway"], wado["orthanc"]
        ctx.rows.append(
            Row(f"WADO-RS large {mb} throughput", g[0], o[0], "MB/s", ">= 1x", g[0] >= o[0])
        )
        ctx.rows.append(
            Row(
                f"WADO-RS large {mb} server RSS growth",
                g[1] / MB,
                o[1] / MB,
                "MB",
                "< 50 MB",
                g[1] < 50 * MB,
            )
        )


def bench_queries(ctx: Context, small: list[corpus.StudySpec], parties: dict) -> None:
    """SQL statements per request, counted in-process on the bench database."""
    from orthanc import queries
    from pydicom.uid import generate_uid

    study = small[0]
    folder = ctx.work / "corpus" / "queries"
    folder.mkdir(parents=True, exist_ok=True)

    def fresh() -> str:
        spec = corpus.StudySpec(
            generate_uid(), generate_uid(), study.patient_id, study.study_date, study.template
        )
        out = folder / f"{spec.study_uid}.dcm"
        return corpus.clone(Path(study.items[0].path), out, study=spec, number=1).path

    rows = queries.per_request(
        reader=parties["reader_token"], system=parties["system_token"], study=study, clone=fresh
    )
    ctx.query_counts = rows
    ctx.log("SQL statements per request: " + "; ".join(f"{r[0]}: {r[1]}" for r in rows))


def bench_synthetic(ctx: Context, patient_ids: list[str]) -> None:
    from studies.models import Study

    seconds = gw.bulk_studies(ctx.args.synthetic, patient_ids, visible=ctx.args.synthetic_visible)
    total = Study.objects.count()
    ctx.log(
        f"{ctx.args.synthetic} synthetic studies inserted by COPY in {seconds:.1f}s "
        f"({total} studies in the gateway's index)"
    )
    rng = random.Random(9)
    n = ctx.args.repeat
    queries: dict[str, list[dict]] = {
        "by PatientID": [{"PatientID": rng.choice(patient_ids)} for _ in range(n)],
        "by StudyDate (3 months, limit 100)": [],
        "paged (limit 50, offset <= 950)": [
            {"limit": 50, "offset": 50 * rng.randrange(20)} for _ in range(n)
        ],
    }
    for _ in range(n):
        start = datetime.date(2000, 1, 1) + datetime.timedelta(days=rng.randrange(9000 - 92))
        end = start + datetime.timedelta(days=91)
        queries["by StudyDate (3 months, limit 100)"].append(
            {"StudyDate": f"{start:%Y%m%d}-{end:%Y%m%d}", "limit": 100}
        )
    ctx.gw_web.qido("studies", {"limit": 1})
    everything = []
    ctx.profile_start("qido_100k")
    for label, params_list in queries.items():
        durations = []
        for params in params_list:
            begin = time.perf_counter()
            ctx.gw_web.qido("studies", params)
            durations.append(time.perf_counter() - begin)
        everything += durations
        s = measure.summary_ms(durations)
        ctx.rows.append(
            Row(
                f"QIDO {total // 1000}k studies {label} p50 (p95 {s['p95']:.0f} ms)",
                s["p50"],
                None,
                "ms",
                "< 20 ms",
                s["p50"] < 20,
            )
        )
    ctx.profile_stop()
    s = measure.summary_ms(everything)
    ctx.rows.append(
        Row(
            f"QIDO median, all queries above, {total // 1000}k studies",
            s["p50"],
            None,
            "ms",
            "< 20 ms",
            s["p50"] < 20,
        )
    )


def _revision() -> str:
    """The gateway code under test: HEAD and whether the work tree differed from it."""
    run = {"cwd": BENCH.parent, "capture_output": True, "text": True, "check": False}
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **run)
    return f"{head or 'unknown'}{' + uncommitted changes' if dirty.stdout.strip() else ''}"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != value:
        return "n/a"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def print_table(ctx: Context, header: list[str]) -> None:
    print()
    for line in header:
        print(line)
    cols = ("measure", "gateway", "Orthanc", "unit", "gw/Orthanc", "target", "met", "load1")
    widths = (70, 10, 10, 6, 10, 15, 7, 6)
    line = "  ".join(
        c.ljust(w) if i in (0, 3, 5) else c.rjust(w)
        for i, (c, w) in enumerate(zip(cols, widths, strict=True))
    )
    print(line)
    print("-" * len(line))
    for row in ctx.rows:
        met = "" if row.met is None else ("met" if row.met else "NOT met")
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        cells = (
            row.label[:70],
            _fmt(row.gateway),
            _fmt(row.orthanc),
            row.unit,
            ratio,
            row.target,
            met,
            row.load.split()[0],
        )
        print(
            "  ".join(
                c.ljust(w) if i in (0, 3, 5) else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
        )
    met = [r.met for r in ctx.rows if r.met is not None]
    print("-" * len(line))
    print(f"targets met: {sum(met)}/{len(met)}")
    for note in ctx.notes:
        print(f"note: {note}")
    if ctx.query_counts:
        print(
            "SQL statements per gateway request (in-process test client, after one warm-up; "
            "the audit append and its flush barrier run on a raw psycopg cursor, pipelined, and "
            "are not counted: add 1 round trip per audited request):"
        )
        for label, count, status in ctx.query_counts:
            print(f"  {label:40} {count:4d}  (HTTP {status})")


def main() -> int:
    args = parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_vs_orthanc_"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.time()
    print(
        f"bench_vs_orthanc: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} CPUs, load {measure.load_average()}, workdir {work}",
        flush=True,
    )
    plugin = orthanc_server.ensure_installed()
    env = gw.environment(
        work / "gateway", http_port=args.gateway_http, dicom_port=args.gateway_dicom, pg=args.pg
    )
    gw.recreate_database(args.pg)
    gw.setup_django(env)
    t0 = time.perf_counter()
    parties = gw.provision(args.patients)
    print(
        f"gateway provisioned ({args.patients} patients) in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )
    orthanc = orthanc_server.Orthanc(
        work / "orthanc", http_port=args.orthanc_http, dicom_port=args.orthanc_dicom
    )
    gateway = gw.Gateway(
        env, http_port=args.gateway_http, dicom_port=args.gateway_dicom, workers=args.workers
    )
    (work / "logs").mkdir(exist_ok=True)
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    try:
        orthanc.start(plugin)
        gateway.start(work / "logs")
        revision = _revision()
        ctx = Context(
            args=args,
            work=work,
            orthanc=orthanc,
            gateway=gateway,
            gw_web=clients.DicomWeb(
                "gateway", gateway.dicomweb, {"Authorization": f"Bearer {parties['reader_token']}"}
            ),
            gw_store=clients.DicomWeb(
                "gateway", gateway.dicomweb, {"Authorization": f"Bearer {parties['system_token']}"}
            ),
            or_web=clients.DicomWeb("orthanc", orthanc.dicomweb),
        )
        ctx.log("building the corpus")
        small, refused = corpus.build_small(
            work / "corpus",
            instances=args.instances + WARM_STUDIES * args.per_study,
            per_study=args.per_study,
            patient_ids=parties["patient_ids"],
        )
        warm, small = small[:WARM_STUDIES], small[WARM_STUDIES:]
        sizes = [int(s) for s in args.large.split(",") if s]
        large = corpus.build_large(
            work / "corpus" / "large", sizes_mb=sizes, patient_id=parties["patient_ids"][0]
        )
        stow_set, cstore_set = small[0::2], small[1::2]
        templates = len({s.template for s in small})
        ctx.log(
            f"corpus: {sum(len(s.items) for s in small)} small instances in {len(small)} "
            f"studies from {templates} pydicom files; skipped: {', '.join(refused)}"
        )
        warm_up(ctx, warm)
        bench_stow_small(ctx, stow_set)
        bench_cstore(ctx, cstore_set)
        bench_qido(ctx, small, parties["patient_ids"])
        bench_wado_small(ctx, small)
        bench_large(ctx, large)
        bench_queries(ctx, small, parties)
        if args.synthetic:
            bench_synthetic(ctx, parties["patient_ids"])
        header = [
            f"Gateway code {revision} (at server start), {gateway.server}, PostgreSQL, "
            f"gate and audit on, DEBUG=False, DB_CONN_MAX_AGE=60, Celery inline (no broker); "
            "reads as a CHEM radiologist with consent + care relationship, writes as CHL "
            "(STOW token / AE CHL_PACS).",
            f"Orthanc: {orthanc_server.version()} + DICOMweb plugin, SQLite index, defaults "
            f"(StorageAccessOnFind=Always, no compression), TcpNoDelay; DIMSE TCP_NODELAY both "
            f"sides. Corpus: {len(small)} small studies ({args.instances} instances, "
            f"{templates} pydicom templates), large {args.large} MiB. "
            f"{os.cpu_count()} CPUs, clients on the same machine.",
            f"Load average at the end: {measure.load_average()}; wall time "
            f"{(time.time() - started) / 60:.1f} min.",
        ]
        print_table(ctx, header)
        (work / "results.json").write_text(json.dumps([r.__dict__ for r in ctx.rows], indent=1))
    finally:
        gateway.stop()
        orthanc.stop()
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
