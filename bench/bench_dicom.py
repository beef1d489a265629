"""The studies layer in-process: ingest, STOW/WADO streaming, QIDO on a 100,000-study index.

The side-by-side comparison with Orthanc (over HTTP and DIMSE, gunicorn, both servers
loaded with the same corpus) is bench_vs_orthanc.py. Here the gateway's own code paths are
timed in-process, without HTTP servers, gate and audit on, so that a regression in ingest,
streaming or the QIDO query plan shows up alone. Prints figures:

    .venv/bin/python bench/bench_dicom.py [--instances 500] [--large 50,100,200]
        [--synthetic 100000] [--database-url postgres://postgres@127.0.0.1:5432/studies_bench]

With a PostgreSQL URL the database is dropped and recreated; SQLite (a temporary file) is
the default. Memory figures are the growth of the process's peak resident set (VmHWM).
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]
MB = 1024 * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--large", default="50,100,200", help="sizes in MiB")
    parser.add_argument("--synthetic", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--database-url", default="")
    return parser.parse_args()


def environment(args: argparse.Namespace, work: Path) -> None:
    os.environ.update(
        DJANGO_SETTINGS_MODULE="anim_gateway.settings",
        SECRET_KEY="bench-only-secret",
        VAR_DIR=str(work),
        ALLOWED_HOSTS="testserver",
        DATABASE_URL=args.database_url or f"sqlite:///{work / 'bench.sqlite3'}",
    )
    os.environ.pop("CELERY_BROKER_URL", None)  # tasks inline, as on a fresh clone
    if args.database_url.startswith("postgres"):
        recreate_postgres(args.database_url)


def recreate_postgres(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def provision() -> dict:
    """Institutions, a CHL system, a CHEM radiologist reading CHL studies, 20 patients."""
    import datetime

    from django.utils import timezone

    from consent import national_id
    from consent.actors import Actor
    from consent.models import CareRelationship, Consent
    from consent.services import provisioning
    from consent.services.tokens import token_issue

    admin = Actor(role="admin", username="bench")
    for code in ("CHL", "CHDN", "CHEM", "HRS"):
        provisioning.institution_create(code=code, name=code, ae_titles=[f"{code}_PACS"])
    reader = provisioning.practitioner_create(
        actor=admin,
        username="reader",
        display_name="Dr Reader",
        profession="radiologist",
        license_number="LIC-R",
        institution_codes=["CHEM"],
    )
    provisioning.account_create(actor=admin, username="pacs", role="system", institution_code="CHL")
    patient_ids = []
    for n in range(20):
        birth = datetime.date(1960 + n, 1, 1)
        patient = provisioning.patient_create(
            actor=admin,
            national_id_value=national_id.make(birth, n + 1),
            family_name="Bench",
            given_name=f"P{n}",
            birth_date=birth,
            sex="O",
            identifiers=[{"institution": "CHL", "value": f"CHL-B{n:04d}"}],
        )
        Consent.objects.create(patient=patient, all_members=True, granted_by="bench")
        CareRelationship.objects.create(
            practitioner=reader,
            patient=patient,
            kind="admission",
            asserted_by="bench",
            end=timezone.now() + datetime.timedelta(days=90),
        )
        patient_ids.append(f"CHL-B{n:04d}")
    return {
        "reader": reader,
        "patient_ids": patient_ids,
        "reader_token": token_issue(username="reader", institution_code="CHEM", days=1),
        "pacs_token": token_issue(username="pacs", institution_code="CHL", days=1),
    }


def line(label: str, value: str) -> None:
    print(f"  {label:<52} {value}")


def bench_ingest(files: list[Path]) -> None:
    from dicom.measure import timed

    from consent.actors import Actor
    from consent.models import Institution
    from studies.ingest import IngestSession, instance_ingest
    from studies.spool import spool_path

    actor = Actor(role="system", institution=Institution.objects.get(code="CHL"), channel="cli")
    session = IngestSession(actor=actor)
    results = []
    run = timed(
        lambda: results.extend(
            instance_ingest(session=session, spooled=spool_path(f)) for f in files
        )
    )
    stored = sum(r.status == "stored" for r in results)
    line(
        "ingest service (import_dicom path), instances/s",
        f"{stored / run.seconds:8.1f}   ({stored} stored of {len(files)})",
    )


def bench_header_encoding(files: list[Path]) -> None:
    """What encoding the headers costs ingest: the index statement's document (one row per
    instance, its header inside), with orjson as ingest_sql encodes it and with json."""
    import json
    import time

    from studies.dicom import read_header
    from studies.ingest_sql import _json

    rows = [[{"metadata": read_header(f).metadata}] for f in files]

    def per_header(encode) -> float:
        began = time.perf_counter()
        for row in rows:
            encode(row)
        return (time.perf_counter() - began) / len(rows) * 1e6

    compact = {"separators": (",", ":")}
    orjson_us, json_us = per_header(_json), per_header(lambda r: json.dumps(r, **compact))
    line("index document per header, orjson / json, us", f"{orjson_us:8.1f} / {json_us:.1f}")


def bench_read_header(files: list[Path], repeat: int = 3) -> None:
    """Parsing and describing the headers (read_header, DICOM JSON included), per file on
    average and for the costliest templates (the clones are made round-robin from them)."""
    import collections
    import time

    from dicom.corpus import usable_files

    from studies.dicom import read_header

    templates = usable_files()
    per_template: dict[str, list[float]] = collections.defaultdict(list)
    for path in files:
        read_header(path)  # the file in the page cache, the value caches warm
        began = time.perf_counter()
        for _ in range(repeat):
            read_header(path)
        template = templates[int(path.stem) % len(templates)].name
        per_template[template].append((time.perf_counter() - began) / repeat * 1000)
    total = sum(sum(times) for times in per_template.values())
    line("read_header per file, mean, ms", f"{total / len(files):8.3f}")
    costliest = sorted(per_template.items(), key=lambda kv: -sum(kv[1]))[:3]
    for name, times in costliest:
        mean, share = sum(times) / len(times), sum(times) / total * 100
        line(f"  {name}, ms (share of the total)", f"{mean:8.3f}   ({share:.0f}%)")


def stow_body(files: list[Path], boundary: str) -> bytes:
    from studies.multipart import multipart_stream

    return b"".join(
        multipart_stream(
            [("application/dicom", [f.read_bytes()]) for f in files], boundary=boundary
        )
    )


def bench_stow_small(client, files: list[Path], token: str) -> None:
    from dicom.measure import timed

    batches = [files[i : i + 10] for i in range(0, len(files), 10)]
    bodies = [stow_body(batch, "bench") for batch in batches]
    content_type = 'multipart/related; type="application/dicom"; boundary=bench'

    def post_all() -> None:
        for body in bodies:
            response = client.generic(
                "POST",
                "/dicomweb/studies",
                body,
                content_type=content_type,
                HTTP_AUTHORIZATION=f"Bearer {token}",
            )
            assert response.status_code in (200, 202), response.content[:300]

    run = timed(post_all)
    line("STOW-RS in-process (10 per request), instances/s", f"{len(files) / run.seconds:8.1f}")


def bench_large(work: Path, sizes: list[int], patient_id: str) -> None:
    from dicom.corpus import large_instance
    from dicom.measure import timed_rss

    from consent.actors import Actor
    from consent.models import Institution
    from studies import selectors, storage
    from studies.api.dicomweb import _dicom_parts
    from studies.ingest import IngestSession, instance_ingest
    from studies.models import Study
    from studies.multipart import MultipartReader, multipart_stream

    actor = Actor(role="system", institution=Institution.objects.get(code="CHL"), channel="cli")
    for size in sizes:
        path = large_instance(work / f"large-{size}.dcm", mebibytes=size, patient_id=patient_id)
        body = work / f"large-{size}.multipart"
        with body.open("wb") as out:
            for chunk in multipart_stream(
                [("application/dicom", storage_chunks(path))], boundary="big"
            ):
                out.write(chunk)
        megabytes = path.stat().st_size / MB

        def stow(body: Path = body) -> None:
            with body.open("rb") as fp:
                reader = MultipartReader(fp.read, boundary="big", max_bytes=1 << 40)
                session = IngestSession(actor=actor)
                for part in reader.parts():
                    assert instance_ingest(session=session, spooled=part.spooled).ok

        run = timed_rss(stow)
        line(
            f"STOW {size} MiB: parse+spool+hash+store+index, MB/s",
            f"{megabytes / run.seconds:8.1f}   peak RSS growth {run.peak_bytes / MB:.1f} MB",
        )
        study = Study.objects.filter(dicom_patient_id=patient_id).order_by("-pk").first()
        keys = [copy.key for copy in selectors.stored_copies(study=study)]

        def wado(keys: list[str] = keys) -> None:
            for _ in multipart_stream(_dicom_parts(keys), boundary="out"):
                pass

        run = timed_rss(wado)
        line(
            f"WADO {size} MiB: multipart stream of stored bytes, MB/s",
            f"{megabytes / run.seconds:8.1f}   peak RSS growth {run.peak_bytes / MB:.1f} MB",
        )
        for key in keys:
            storage.object_delete(key=key)
        path.unlink()
        body.unlink()


def storage_chunks(path: Path):
    with path.open("rb") as fp:
        while chunk := fp.read(MB):
            yield chunk


def bench_reads(client, token: str, patient_ids: list[str], repeat: int, label: str) -> None:
    import json
    import random

    from dicom.measure import latencies, p50_p95

    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    rng = random.Random(5)

    def qido(params_of) -> list[float]:
        def one(n: int) -> None:
            response = client.get("/dicomweb/studies", params_of(n), **auth)
            assert response.status_code == 200, response.content[:300]

        return latencies(one, repeat=repeat)

    cases = {
        "by PatientID": lambda n: {"PatientID": rng.choice(patient_ids)},
        "by StudyDate range (3 months)": lambda n: {
            "StudyDate": f"20{15 + n % 9:02d}0101-20{15 + n % 9:02d}0331",
            "limit": 100,
        },
        "paged (limit 50, offset 0-950)": lambda n: {"limit": 50, "offset": (n % 20) * 50},
    }
    for name, params in cases.items():
        p50, p95 = p50_p95(qido(params))
        line(f"QIDO {name} {label}, p50/p95 ms", f"{p50:8.2f} / {p95:.2f}")
    if label:
        return
    found = json.loads(client.get("/dicomweb/studies", {"limit": 200}, **auth).content)
    urls = [s["00081190"]["Value"][0].replace("http://testserver", "") for s in found]

    def metadata(n: int) -> None:
        response = client.get(urls[n % len(urls)] + "/metadata", **auth)
        b"".join(response.streaming_content)

    p50, p95 = p50_p95(latencies(metadata, repeat=repeat))
    line("WADO study /metadata, p50/p95 ms", f"{p50:8.2f} / {p95:.2f}")

    def retrieve(n: int) -> None:
        response = client.get(urls[n % len(urls)], **auth)
        assert response.status_code == 200
        b"".join(response.streaming_content)

    p50, p95 = p50_p95(latencies(retrieve, repeat=repeat))
    line("WADO small study (multipart), p50/p95 ms", f"{p50:8.2f} / {p95:.2f}")


def main() -> None:
    args = parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-dicom-"))
    environment(args, work)
    import django

    django.setup()
    from dicom.corpus import clones
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    call_command("migrate", verbosity=0)
    cast = provision()
    client = Client()
    print(f"bench_dicom: {connection.vendor}, work folder {work}, load {os.getloadavg()[0]:.2f}")
    half = args.instances // 2
    files = clones(work / "corpus", count=args.instances, patient_ids=cast["patient_ids"])
    bench_read_header(files[:half])
    bench_header_encoding(files[:half])
    bench_ingest(files[:half])
    bench_stow_small(client, files[half:], cast["pacs_token"])
    bench_reads(client, cast["reader_token"], cast["patient_ids"], args.repeat, "")
    bench_large(work, [int(s) for s in args.large.split(",") if s], cast["patient_ids"][0])
    if args.synthetic:
        from dicom.synthetic import populate

        visible = populate(
            studies=args.synthetic, per_patient=10, reader=cast["reader"], visible_patients=50
        )
        if connection.vendor == "postgresql":
            # Planner statistics for the bulk-loaded index, as bench_vs_orthanc.py takes them
            # (without them the scope's OR is planned as a sequential scan of every study).
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
        bench_reads(
            client, cast["reader_token"], visible, args.repeat, f"on {args.synthetic:,} studies"
        )
    print(f"  (load average at the end: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
