"""Audit log benchmark: append throughput (1 and 16 writer processes) and verify speed.

Run against a dedicated PostgreSQL database (never the test one); it is flushed, audit log
included:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_audit \\
        .venv/bin/python bench/bench_audit.py [--appends 8000] [--verify-events 1000000] \\
        [--search-events 10000000]
"""

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anim_gateway.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret")
os.environ.setdefault("AUDIT_ERASABLE", "True")  # a bench database is erased between runs


def setup_django() -> None:
    import django

    django.setup()


def ensure_database(url: str) -> None:
    """Create the bench database if it is missing, then migrate it."""
    import dj_database_url
    import psycopg

    settings = dj_database_url.parse(url)
    name = settings["NAME"]
    if "bench" not in name:
        sys.exit(f"Refusing to run against {name!r}: use a dedicated database named *bench*.")
    admin = dict(settings, NAME="postgres")
    conninfo = (
        f"host={admin['HOST']} port={admin['PORT'] or 5432} user={admin['USER']} "
        f"password={admin['PASSWORD'] or ''} dbname=postgres"
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not found:
            conn.execute(f'CREATE DATABASE "{name}"')
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def erase() -> None:
    from django.core.management import call_command

    call_command("flush", interactive=False, verbosity=0, erase_audit_log=True)


def sample_event(n: int, writer: int):
    from audit.events import Event

    return Event(
        action="study.retrieve",
        outcome="permit" if n % 7 else "deny",
        reason_code="" if n % 7 else "NO_CONSENT",
        basis="CONSENT",
        basis_ids={"consent": n, "care_relationship": writer},
        actor_role="practitioner",
        actor_username=f"dr{writer}",
        actor_display=f"Dr Writer {writer}",
        actor_profession="physician",
        acting_institution="CHL",
        patient=f"19800517{n % 100000:05d}",
        study_uid=f"1.2.826.0.1.3680043.8.498.{writer}.{n}",
        client_address="192.0.2.10",
        request_id=f"req-{writer}-{n}",
        message="Permitted: the patient consented to sharing with CHL.",
        detail={"series": n % 5},
    )


def append_worker(writer: int, count: int, barrier, results) -> None:
    setup_django()
    from django.db import connection

    from audit.services import append

    connection.ensure_connection()
    barrier.wait()
    started = time.perf_counter()
    for n in range(count):
        append(sample_event(n, writer))
    results.put((writer, time.perf_counter() - started))


def bench_appends(writers: int, total: int) -> float:
    """Appends per second with `writers` processes appending `total` events between them."""
    from audit.models import AuditEvent
    from audit.verification import verify_chain

    erase()
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(writers + 1), ctx.Queue()
    each = total // writers
    procs = [
        ctx.Process(target=append_worker, args=(w, each, barrier, results)) for w in range(writers)
    ]
    for proc in procs:
        proc.start()
    barrier.wait()
    started = time.perf_counter()
    for _ in procs:
        results.get()
    elapsed = time.perf_counter() - started
    for proc in procs:
        proc.join()
    count = AuditEvent.objects.count()
    result = verify_chain()
    if count != each * writers or not result.valid or result.last_seq != count:
        sys.exit(f"FAILED: {count} events, {result.summary()}")
    rate = count / elapsed
    print(
        f"append  writers={writers:2d}  events={count}  {elapsed:.2f} s  {rate:,.0f} appends/s"
        "  (gapless, chain verifies)"
    )
    return rate


def generate_chain(total: int) -> float:
    """Write a valid chain of `total` events with COPY (bypassing append) and move the head."""
    from django.db import connection

    from audit import canonical
    from audit.events import EVENT_FIELDS

    erase()
    started = time.perf_counter()
    start_time = datetime(2026, 1, 1, tzinfo=UTC)
    columns = ", ".join(canonical.CHAIN_COLUMNS)
    prev = canonical.GENESIS_HASH
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY audit_auditevent ({columns}) FROM STDIN") as copy:
            for seq in range(1, total + 1):
                event = sample_event(seq, seq % 16)
                fields = [getattr(event, name) for name in EVENT_FIELDS]
                time_ = start_time + timedelta(microseconds=seq * 1000)
                digest = canonical.event_hash(
                    prev_hash=prev, version=1, seq=seq, time=time_, fields=fields
                )
                encoded = [
                    canonical.encode_content(v) if isinstance(v, dict) else v for v in fields
                ]
                copy.write_row([seq, 1, time_, prev, digest, *encoded])
                prev = digest
        cursor.execute("UPDATE audit_audithead SET seq = %s, hash = %s", [total, prev])
        cursor.execute("ANALYZE audit_auditevent")
    return time.perf_counter() - started


def verify_worker(workers: int, results) -> None:
    setup_django()
    from audit.verification import verify_chain

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    result = verify_chain(workers=workers)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # With workers, the largest worker process's peak (they are reaped by now).
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    results.put((result.valid, result.events, elapsed, before, max(after, children)))


def bench_verify(total: int, workers: list[int]) -> None:
    generated = generate_chain(total)
    print(f"generated a valid chain of {total:,} events with COPY in {generated:.1f} s")
    ctx = mp.get_context("spawn")
    for count in workers:
        results = ctx.Queue()
        proc = ctx.Process(target=verify_worker, args=(count, results))
        proc.start()
        valid, events, elapsed, before, after = results.get()
        proc.join()
        print(
            f"verify  workers={count}  events={events:,}  valid={valid}  {elapsed:.2f} s  "
            f"{events / elapsed:,.0f} events/s  peak RSS {after / 1024:.0f} MiB per process "
            f"(after django.setup {before / 1024:.0f} MiB)"
        )


SEARCH_START = datetime(2026, 1, 1, tzinfo=UTC)
# One event a second; 100,000 patients, 16 actors, 4 institutions, one in 7 a deny, and of
# the actions one in a hundred a consent grant. The DPO's filters see realistic selectivity.
_SEARCH_LOG_SQL = """
INSERT INTO audit_auditevent (seq, time, version, prev_hash, hash, action, outcome,
    reason_code, basis, basis_ids, actor_role, actor_username, actor_display, actor_profession,
    acting_institution, on_behalf_of, patient, study_uid, client_address, request_id, message,
    detail)
SELECT g, %s::timestamptz + g * interval '1 second', 1, repeat('0', 64), repeat('0', 64),
    CASE WHEN g %% 100 = 0 THEN 'consent.grant' WHEN g %% 100 < 60 THEN 'study.retrieve'
         WHEN g %% 100 < 90 THEN 'study.search' ELSE 'study.metadata' END,
    CASE WHEN g %% 7 = 0 THEN 'deny' ELSE 'permit' END,
    CASE WHEN g %% 7 = 0 THEN 'NO_CONSENT' ELSE '' END, 'CONSENT', '{}', 'practitioner',
    'dr' || (g %% 16), 'Dr Writer ' || (g %% 16), 'physician',
    (ARRAY['CHL', 'CHdN', 'CHEM', 'HRS'])[g %% 4 + 1], '',
    '19800517' || lpad((g %% 100000)::text, 5, '0'), '1.2.826.0.1.3680043.8.498.' || g,
    '192.0.2.10', 'req-' || g, 'Permitted.', '{}'
FROM generate_series(%s::bigint, %s::bigint) AS g
"""


def generate_search_log(total: int) -> float:
    """`total` events in SQL, in batches, with the indexes rebuilt afterwards (as a restore
    would); the chain's hashes are placeholders: this phase measures searches, not verify."""
    from django.db import connection

    erase()
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_auditevent' "
            "AND indexname <> 'audit_auditevent_pkey'"
        )
        indexes = cursor.fetchall()
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        step = 1_000_000
        for first in range(1, total + 1, step):
            last = min(total, first + step - 1)
            cursor.execute(_SEARCH_LOG_SQL, [SEARCH_START, first, last])
        for _, definition in indexes:
            cursor.execute(definition)
        cursor.execute("UPDATE audit_audithead SET seq = %s", [total])
        cursor.execute("VACUUM ANALYZE audit_auditevent")
    return time.perf_counter() - started


def bench_search(total: int, repeat: int) -> None:
    """The DPO's searches (audit.selectors.event_list, one page of 50, newest first) on a log
    of `total` events: p50 and p95 per filter, first page and a page deep in the log."""
    from audit.selectors import EventFilters, event_list

    generated = generate_search_log(total)
    print(f"generated {total:,} events (one a second, hashes not chained) in {generated:.1f} s")
    day = SEARCH_START + timedelta(seconds=total // 4)  # a quarter into the log
    searches = {
        "newest events": EventFilters(),
        "one patient": EventFilters(patient="1980051712345"),
        "one actor": EventFilters(actor="dr3"),
        "denies": EventFilters(outcome="deny"),
        "consent grants (1%)": EventFilters(action="consent.grant"),
        "actor + denies": EventFilters(actor="dr3", outcome="deny"),
        "one hour": EventFilters(since=day, until=day + timedelta(hours=1)),
    }
    for name, filters in searches.items():
        for label, before in (("first page", None), ("deep page", total // 2)):
            timings = []
            for _ in range(repeat):
                started = time.perf_counter()
                rows = event_list(filters=filters, before=before, limit=50)
                timings.append((time.perf_counter() - started) * 1000)
            timings.sort()
            p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
            print(
                f"search  {name:20s} {label:10s} rows={len(rows):2d}  "
                f"p50 {statistics.median(timings):6.2f} ms  p95 {p95:6.2f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=8000)
    parser.add_argument("--writers", default="1,16")
    parser.add_argument("--verify-events", type=int, default=1_000_000)
    parser.add_argument("--verify-workers", default="1,2")
    parser.add_argument(
        "--search-events", type=int, default=0, help="e.g. 10000000 for the DPO search phase"
    )
    parser.add_argument("--search-repeat", type=int, default=20)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a dedicated PostgreSQL database, e.g. .../bench_audit")
    setup_django()
    ensure_database(url)
    for writers in [int(w) for w in args.writers.split(",") if w]:
        bench_appends(writers, args.appends)
    if args.verify_events:
        bench_verify(args.verify_events, [int(w) for w in args.verify_workers.split(",") if w])
    if args.search_events:
        bench_search(args.search_events, args.search_repeat)
    print(f"load average over the last minute at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
