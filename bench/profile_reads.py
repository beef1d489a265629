"""DICOMweb read path in-process: per-request time, SQL statements and a profile, on PostgreSQL.

Calls Django's WSGI handler directly (middleware, DRF, the gate and the audit on; no HTTP
server), on a dedicated database ``bench_reads`` (dropped and recreated), provisioned as
bench_vs_orthanc.py does (a CHEM radiologist reading CHL studies, basis CONSENT):

    .venv/bin/python bench/profile_reads.py [--instances 40] [--synthetic 0] [--profile]
"""

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import requests

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from orthanc import clients, corpus, measure
from orthanc import gateway as gw

DB = "bench_reads"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--instances", type=int, default=40)
    p.add_argument("--patients", type=int, default=20)
    p.add_argument("--synthetic", type=int, default=0, help="synthetic studies by COPY")
    p.add_argument("--repeat", type=int, default=200)
    p.add_argument("--profile", action="store_true", help="cProfile each request kind")
    p.add_argument("--top", type=int, default=35)
    p.add_argument("--sql", action="store_true", help="print the SQL of one request per kind")
    p.add_argument("--only", default="", help="comma-separated request labels (prefixes)")
    p.add_argument("--reuse", action="store_true", help="keep the existing database")
    p.add_argument("--pg", default="postgres://postgres@127.0.0.1:5432")
    p.add_argument(
        "--http", action="store_true", help="also through gunicorn (gunicorn.conf.py) over HTTP"
    )
    p.add_argument(
        "--gunicorn",
        action="append",
        default=[],
        metavar="ARGS",
        help="with --http: extra gunicorn arguments of one server variant, asked in turn with "
        "the others request by request (repeat the option), e.g. --gunicorn=--threads=1",
    )
    return p.parse_args()


def _environ(path: str, query: str, headers: dict) -> dict:
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8143",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "SERVER_PROTOCOL": "HTTP/1.1",
    }
    environ.update(headers)
    return environ


def _call(app, path: str, query: str, headers: dict) -> tuple[str, int]:
    status = []
    body = app(_environ(path, query, headers), lambda s, h, e=None: status.append(s))
    size = sum(len(chunk) for chunk in body)
    if hasattr(body, "close"):
        body.close()
    return status[0], size


def _ingest(app_token: str, studies: list) -> None:
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1")
    for spec in studies:
        boundary = uuid.uuid4().hex
        body = b""
        for item in spec.items:
            body += f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            body += Path(item.path).read_bytes() + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        response = client.post(
            "/dicomweb/studies",
            data=body,
            content_type=f'multipart/related; type="application/dicom"; boundary={boundary}',
            HTTP_AUTHORIZATION=f"Bearer {app_token}",
        )
        assert response.status_code in (200, 202), response.content[:300]


def requests_of(studies: list, patient_ids: list[str]) -> dict[str, list[tuple[str, str, dict]]]:
    rng = random.Random(3)
    multipart = {"HTTP_ACCEPT": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    json_accept = {"HTTP_ACCEPT": "application/dicom+json"}
    out: dict[str, list] = {"wado": [], "metadata": [], "qido_pid": [], "qido_date": []}
    out["qido_paged"] = []
    for _ in range(50):
        s = rng.choice(studies)
        item = rng.choice(s.items)
        path = "/dicomweb/" + clients.instance_path(s.study_uid, s.series_uid, item.sop_uid)
        out["wado"].append((path, "", multipart))
        out["metadata"].append((f"/dicomweb/studies/{s.study_uid}/metadata", "", json_accept))
        out["qido_pid"].append(
            ("/dicomweb/studies", f"PatientID={rng.choice(patient_ids)}", json_accept)
        )
        year = rng.randrange(2000, 2024)
        month = rng.randrange(1, 10)
        out["qido_date"].append(
            (
                "/dicomweb/studies",
                f"StudyDate={year}{month:02d}01-{year}{month + 3:02d}01&limit=100",
                json_accept,
            )
        )
        out["qido_paged"].append(
            ("/dicomweb/studies", f"limit=50&offset={50 * rng.randrange(20)}", json_accept)
        )
    return out


def measure_kind(app, label: str, calls: list, token: str, args) -> None:
    from django.db import connection, reset_queries

    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    for path, query, headers in calls[:5]:
        status, _ = _call(app, path, query, {**headers, **auth})
        assert status.startswith("200"), (label, status)
    connection.force_debug_cursor = True
    reset_queries()
    _call(app, *calls[0][:2], {**calls[0][2], **auth})
    statements = len(connection.queries)
    if args.sql:
        for q in connection.queries:
            print("   ", q["time"], q["sql"][:220].replace("\n", " "))
    connection.force_debug_cursor = False
    times = []
    for n in range(args.repeat):
        path, query, headers = calls[n % len(calls)]
        begin = time.perf_counter()
        _call(app, path, query, {**headers, **auth})
        times.append((time.perf_counter() - begin) * 1000)
    s = measure.summary_ms([t / 1000 for t in times])
    print(
        f"{label:12s} p50 {s['p50']:6.2f} ms  p95 {s['p95']:6.2f} ms  "
        f"mean {statistics.mean(times):6.2f} ms  SQL {statements}  (load {measure.load_average()})",
        flush=True,
    )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for n in range(args.repeat):
            path, query, headers = calls[n % len(calls)]
            _call(app, path, query, {**headers, **auth})
        profiler.disable()
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out).sort_stats("cumulative")
        stats.print_stats(args.top)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())


def main() -> int:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="profile-reads-"))
    gw.DB_NAME = DB
    env = gw.environment(work / "var", http_port=8143, dicom_port=11199, pg=args.pg)
    if not args.reuse:
        gw.recreate_database(args.pg)
    gw.setup_django(env)
    from django.core.handlers.wsgi import WSGIHandler

    parties = gw.provision(args.patients) if not args.reuse else None
    assert parties is not None, "--reuse is not supported yet"
    studies, _ = corpus.build_small(
        work / "corpus",
        instances=args.instances,
        per_study=2,
        patient_ids=parties["patient_ids"],
    )
    _ingest(parties["system_token"], studies)
    if args.synthetic:
        seconds = gw.bulk_studies(args.synthetic, parties["patient_ids"], visible=0.1)
        print(f"{args.synthetic} synthetic studies in {seconds:.1f}s")
    app = WSGIHandler()
    only = [o for o in args.only.split(",") if o]
    for label, calls in requests_of(studies, parties["patient_ids"]).items():
        if only and not any(label.startswith(o) for o in only):
            continue
        measure_kind(app, label, calls, parties["reader_token"], args)
        if args.http:
            measure_http(env, label, calls, parties["reader_token"], args)
    return 0


def measure_http(env: dict, label: str, calls: list, token: str, args) -> None:
    """The same requests through gunicorn with the production settings, one client. With
    several --gunicorn variants, one server each, asked in turn request by request: this
    machine's latency drifts by a millisecond from one minute to the next, which would
    swamp the difference between variants measured one after the other."""
    variants = args.gunicorn or [""]
    with contextlib.ExitStack() as stack:
        sessions = []
        for number, variant in enumerate(variants):
            port = 8199 + number
            stack.enter_context(_gunicorn(env, port, variant.split()))
            sessions.append((port, _session(token, port)))
        times: list[list[float]] = [[] for _ in variants]
        for n in range(args.repeat + 10):
            path, query, headers = calls[n % len(calls)]
            for (port, session), kept in zip(sessions, times, strict=True):
                elapsed = _timed_get(session, f"http://127.0.0.1:{port}{path}?{query}", headers)
                if n >= 10:  # the first requests warm both workers up
                    kept.append(elapsed)
        for variant, kept in zip(variants, times, strict=True):
            s = measure.summary_ms(kept)
            print(
                f"{label:12s} HTTP p50 {s['p50']:6.2f} ms  p95 {s['p95']:6.2f} ms  {variant}",
                flush=True,
            )


@contextlib.contextmanager
def _gunicorn(env: dict, port: int, extra: list[str]) -> Iterator[None]:
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            f"--config={BENCH.parent / 'gunicorn.conf.py'}",
            f"--bind=127.0.0.1:{port}",
            "--workers=2",
            *extra,
            "anim_gateway.wsgi",
        ],
        cwd=BENCH.parent,
        env=dict(os.environ, **env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        server.terminate()
        server.wait(timeout=30)


def _session(token: str, port: int) -> requests.Session:
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"})
    for _ in range(100):
        try:
            session.get(f"http://127.0.0.1:{port}/dicomweb/studies?limit=1", timeout=5)
            return session
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(f"gunicorn on port {port} did not answer")


def _timed_get(session: requests.Session, url: str, headers: dict) -> float:
    """Seconds until the whole body is read, as a viewer reads it."""
    begin = time.perf_counter()
    response = session.get(url, headers={"Accept": headers["HTTP_ACCEPT"]})
    response.content  # noqa: B018
    elapsed = time.perf_counter() - begin
    assert response.status_code == 200, (url, response.status_code)
    return elapsed


if __name__ == "__main__":
    sys.exit(main())
