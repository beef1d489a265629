"""Gate benchmark: the cost of one audited decision (facts + policy + audit write).

Prints, for SQLite (a scratch file) and for PostgreSQL when DATABASE_URL names a dedicated
database whose name contains "bench" (it is flushed, audit log included): median and p99
per decision, how a decision's time splits between loading the facts, the policy, the audit
append and the rest, then decisions per second with 1 and 8 concurrent client processes
(each client runs for the same window, so that stragglers do not dilute the figure).

    createdb -h 127.0.0.1 -U postgres bench_gate
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_gate .venv/bin/python bench/bench_gate.py
"""

import argparse
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anim_gateway.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-secret")
os.environ.setdefault("AUDIT_ERASABLE", "True")  # a bench database is erased between runs
UID = "1.2.826.0.1.3680043.8.498.4242"


@dataclass(frozen=True)
class Study:
    study_uid: str
    institution_id: int
    patient_id: int | None


def prepare() -> None:
    """Migrate, erase, and create the cast: Alice at CHL, Xavier consenting, an admission."""
    import datetime

    from django.core.management import call_command

    from consent import national_id
    from consent.actors import Actor
    from consent.services import care, consents, provisioning

    call_command("migrate", verbosity=0)
    call_command("flush", interactive=False, verbosity=0, erase_audit_log=True)
    admin = Actor(role="admin", username="bench")
    for code in ("CHL", "CHEM"):
        provisioning.institution_create(code=code, name=code, ae_titles=[f"{code}_PACS"])
    alice = provisioning.practitioner_create(
        actor=admin,
        username="alice",
        display_name="Dr Alice",
        profession="physician",
        license_number="L1",
        institution_codes=["CHL"],
    )
    number = national_id.make(datetime.date(1980, 5, 17), 1)
    xavier = provisioning.patient_create(
        actor=admin,
        national_id_value=number,
        family_name="Demo",
        given_name="X",
        birth_date=national_id.birth_date(number),
        sex="O",
        identifiers=[],
    )
    consents.consent_grant(actor=admin, patient=xavier, institution_codes=None)
    care.care_relationship_assert(actor=admin, patient=xavier, practitioner=alice, kind="admission")


def one_decision_factory():
    """A callable making one audited permit decision (the full cost, nothing cached)."""
    from consent import gate
    from consent.actors import actor_for
    from consent.models import Institution, Patient, Practitioner

    chl = Institution.objects.get(code="CHL")
    chem = Institution.objects.get(code="CHEM")
    actor = actor_for(Practitioner.objects.get().user, institution=chl, request_id="bench")
    patient = Patient.objects.get()
    study = Study(UID, chem.pk, patient.pk)

    def decide() -> None:
        gate.authorize(
            actor, gate.VIEW_IMAGES, patient=patient, study=study, audit_action="study.retrieve"
        )

    return decide


def latency(count: int) -> tuple[float, float]:
    decide = one_decision_factory()
    for _ in range(50):  # warm up connections and caches of the database
        decide()
    times = []
    for _ in range(count):
        start = time.perf_counter()
        decide()
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1000, times[int(len(times) * 0.99) - 1] * 1000


def split(count: int) -> dict[str, float]:
    """Mean milliseconds of each part of a decision, timed inside real decisions."""
    from consent import gate

    parts = {"facts": 0.0, "policy": 0.0, "audit": 0.0}
    wrapped = {"facts": (gate, "load_facts"), "policy": (gate.policy, "decide")}
    wrapped["audit"] = (gate, "_audited")
    originals = {name: getattr(owner, attr) for name, (owner, attr) in wrapped.items()}

    def timed(name: str, function):
        def run(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                parts[name] += time.perf_counter() - start

        return run

    decide = one_decision_factory()
    for name, (owner, attr) in wrapped.items():
        setattr(owner, attr, timed(name, originals[name]))
    try:
        start = time.perf_counter()
        for _ in range(count):
            decide()
        total = time.perf_counter() - start
    finally:
        for name, (owner, attr) in wrapped.items():
            setattr(owner, attr, originals[name])
    parts["other"] = total - sum(parts.values())
    return {name: seconds * 1000 / count for name, seconds in parts.items()}


def _client(began: float, seconds: float, results) -> None:
    from django.db import connections

    connections.close_all()
    decide = one_decision_factory()
    decide()
    # Every client decides within the same window, so the rate is that of all of them at
    # once (perf_counter is CLOCK_MONOTONIC on Linux: one clock for every forked client).
    time.sleep(max(0.0, began - time.perf_counter()))
    done = 0
    while time.perf_counter() < began + seconds:
        decide()
        done += 1
    results.put((done, time.perf_counter()))
    connections.close_all()


def throughput(clients: int, seconds: float) -> float:
    from django.db import connections

    connections.close_all()
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    began = time.perf_counter() + 1.0  # time for every client to connect and warm up
    procs = [ctx.Process(target=_client, args=(began, seconds, results)) for _ in range(clients)]
    for proc in procs:
        proc.start()
    finished = [results.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    # The last decision of each client may overrun the window a little: count it in.
    return sum(done for done, _ in finished) / (max(end for _, end in finished) - began)


def run_one(label: str, count: int, seconds: float) -> None:
    import django

    django.setup()
    from django.db import connection

    # Other work on the machine skews every figure: say how busy it was, before and after.
    print(f"{label}: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    prepare()
    median, p99 = latency(count)
    print(
        f"{label} ({connection.vendor}): one audited decision: median {median:.2f} ms, "
        f"p99 {p99:.2f} ms over {count}"
    )
    parts = split(count)
    shares = ", ".join(f"{name} {ms:.3f} ms" for name, ms in parts.items())
    print(f"{label}: a decision's mean time: {shares}")
    for clients in (1, 8):
        rate = throughput(clients, seconds)
        print(f"{label}: {clients} client(s): {rate:,.0f} audited decisions/s over {seconds:g} s")
    print(f"{label}: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0, help="window of each rate")
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        run_one(args.worker, args.decisions, args.seconds)
        return
    runs = []
    if args.only in (None, "sqlite"):
        scratch = Path(tempfile.mkdtemp(prefix="bench-gate-")) / "bench_gate.sqlite3"
        runs.append(("SQLite", f"sqlite:///{scratch}"))
    url = os.environ.get("DATABASE_URL", "")
    if args.only in (None, "postgresql"):
        if not url.startswith("postgres"):
            print("PostgreSQL: skipped (set DATABASE_URL to a dedicated *bench* database)")
        elif "bench" not in url.rsplit("/", 1)[-1]:
            sys.exit("Refusing to flush a database whose name does not contain 'bench'.")
        else:
            runs.append(("PostgreSQL", url))
    for label, database_url in runs:
        env = dict(os.environ, DATABASE_URL=database_url)
        cmd = [sys.executable, __file__, "--worker", label]
        cmd += ["--decisions", str(args.decisions), "--seconds", str(args.seconds)]
        subprocess.run(cmd, env=env, check=True)


if __name__ == "__main__":
    main()
