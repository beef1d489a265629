"""The gateway under test: its own PostgreSQL database, demo parties, gunicorn and the listener."""

import datetime
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
DB_NAME = "bench_dicom"
READER = "bench-reader"
SYSTEM = "chl-pacs"
INSTITUTIONS = [
    ("CHL", "Centre Hospitalier de Luxembourg"),
    ("CHDN", "Centre Hospitalier du Nord"),
    ("CHEM", "Centre Hospitalier Emile Mayrisch"),
    ("HRS", "Hôpitaux Robert Schuman"),
]


def environment(var_dir: Path, *, http_port: int, dicom_port: int, pg: str) -> dict[str, str]:
    """The gateway's production-like environment (DEBUG off, PostgreSQL, its own VAR_DIR)."""
    return {
        "DATABASE_URL": f"{pg}/{DB_NAME}",
        "DEBUG": "False",
        "SECRET_KEY": "bench",
        "ALLOWED_HOSTS": "127.0.0.1",
        "VAR_DIR": str(var_dir),
        "DB_CONN_MAX_AGE": "60",
        "DICOM_LISTENER_PORT": str(dicom_port),
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "anim_gateway.settings",
        "SITE_URL": f"http://127.0.0.1:{http_port}",
    }


def recreate_database(pg: str) -> None:
    host = pg.split("@")[-1].split(":")[0]
    user = pg.split("//")[1].split("@")[0]
    args = ["-h", host, "-U", user]
    subprocess.run(["dropdb", *args, "--if-exists", "--force", DB_NAME], check=True)
    subprocess.run(["createdb", *args, DB_NAME], check=True)


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def provision(patient_count: int) -> dict:
    """Institutions, a CHL system account, a CHEM physician who cares for every bench patient,
    patients with CHL identifiers who consent to sharing with all members; and the tokens."""
    from django.core.management import call_command

    from consent import national_id
    from consent.actors import Actor
    from consent.models import Role
    from consent.services import care, consents, provisioning
    from consent.services.tokens import token_issue

    call_command("migrate", verbosity=0)
    admin = Actor(role=Role.ADMIN, username="bench", display_name="Bench", channel="cli")
    for code, name in INSTITUTIONS:
        provisioning.institution_create(code=code, name=name, ae_titles=[f"{code}_PACS"])
    reader = provisioning.practitioner_create(
        actor=admin,
        username=READER,
        display_name="Dr Bench Reader",
        profession="radiologist",
        license_number="LU-BENCH",
        institution_codes=["CHEM"],
    )
    provisioning.account_create(
        actor=admin, username=SYSTEM, role=Role.SYSTEM, institution_code="CHL"
    )
    patient_ids = []
    for n in range(patient_count):
        birth = datetime.date(1940, 1, 1) + datetime.timedelta(days=97 * n)
        identifier = f"CHL-B{n:04d}"
        patient = provisioning.patient_create(
            actor=admin,
            national_id_value=national_id.make(birth, 100 + n % 800),
            family_name="Bench",
            given_name=f"P{n:04d}",
            birth_date=birth,
            sex="O",
            identifiers=[{"institution": "CHL", "value": identifier}],
        )
        consents.consent_grant(actor=admin, patient=patient, institution_codes=None)
        care.care_relationship_assert(
            actor=admin, patient=patient, practitioner=reader, kind="admission"
        )
        patient_ids.append(identifier)
    return {
        "patient_ids": patient_ids,
        "reader_token": token_issue(username=READER, institution_code="CHEM", days=2),
        "system_token": token_issue(username=SYSTEM, institution_code="CHL", days=2),
    }


@dataclass
class Gateway:
    env: dict[str, str]
    http_port: int
    dicom_port: int
    workers: int = 4
    server: str = ""
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicomweb"

    @property
    def pid(self) -> int:
        return self.processes[0].pid

    @property
    def listener_pid(self) -> int:
        return self.processes[1].pid

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen:
        assert self.logs is not None
        log = (self.logs / f"{name}.log").open("wb")
        env = dict(os.environ, **self.env)
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(proc)
        return proc

    def start(self, logs: Path, timeout: float = 120) -> None:
        self.logs = logs
        python = sys.executable
        gunicorn = Path(python).with_name("gunicorn")
        if gunicorn.exists():
            self.server = (
                f"gunicorn {_version(gunicorn)} (gunicorn.conf.py: {self.workers} gthread workers "
                "that leave new connections to idle ones, 4 threads, keep-alive)"
            )
            args = [
                str(gunicorn),
                "anim_gateway.wsgi:application",
                f"--bind=127.0.0.1:{self.http_port}",
                # The production settings (threaded workers, keep-alive, preload), with the
                # bench's own port and worker count.
                f"--config={ROOT / 'gunicorn.conf.py'}",
                f"--workers={self.workers}",
                "--graceful-timeout=5",
            ]
        else:
            self.server = "manage.py runserver --noreload (gunicorn not installed)"
            args = [python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{self.http_port}"]
        self._spawn(args, "gateway")
        listener = Path(__file__).with_name("listener.py")
        self._spawn([python, str(listener), str(self.dicom_port)], "listener")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc in self.processes:
                if proc.poll() is not None:
                    raise RuntimeError(f"gateway process {proc.args[0]} exited; see {logs}")
            try:
                requests.get(f"{self.dicomweb}/studies", timeout=10)
                if _port_open(self.dicom_port):
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the gateway did not answer in time; see {logs}")

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _version(gunicorn: Path) -> str:
    out = subprocess.run([str(gunicorn), "--version"], capture_output=True, text=True, check=False)
    return (out.stdout or out.stderr).strip().split()[-1].strip("()")


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def bulk_studies(count: int, patient_ids: list[str], *, visible: float, seed: int = 11) -> float:
    """Insert ``count`` synthetic studies by COPY (not via ingest); seconds taken.

    A fraction ``visible`` belongs to the bench patients (CHL studies the reader may see); the
    rest are unreconciled studies of CHDN and HRS that the reader's scope excludes.
    """
    import io
    import json
    import random

    from django.db import connection

    from consent.models import Institution, PatientIdentifier
    from studies.models import Study

    rng = random.Random(seed)
    by_code = {i.code: i for i in Institution.objects.all()}
    patients = dict(
        PatientIdentifier.objects.filter(value__in=patient_ids).values_list("value", "patient_id")
    )
    first = datetime.date(2000, 1, 1)
    start = time.perf_counter()
    buf = io.StringIO()
    now = datetime.datetime.now(datetime.UTC).isoformat()
    for n in range(count):
        if rng.random() < visible:
            institution, pid = by_code["CHL"], patient_ids[n % len(patient_ids)]
            patient = str(patients[pid])
        else:
            institution = by_code[rng.choice(["CHDN", "HRS"])]
            pid, patient = f"{institution.code}-S{rng.randrange(40000):05d}", "\\N"
        day = first + datetime.timedelta(days=rng.randrange(9000))
        uid = f"2.25.{10**30 + n}"
        attrs = {
            "0020000D": {"vr": "UI", "Value": [uid]},
            "00100020": {"vr": "LO", "Value": [pid]},
            "00080020": {"vr": "DA", "Value": [day.strftime("%Y%m%d")]},
            "00080050": {"vr": "SH", "Value": [f"SYN{n}"]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": f"BENCH^{pid}"}]},
        }
        row = [
            uid, str(institution.pk), patient, pid, institution.default_issuer,
            str(institution.pk), day.isoformat(), "120000", f"SYN{n}", "Synthetic", "CT", "1",
            "10", json.dumps(attrs), now, now,
        ]  # fmt: skip
        buf.write("\t".join(row) + "\n")
    buf.seek(0)
    columns = (
        "study_uid, institution_id, patient_id, dicom_patient_id, issuer,"
        " identifier_institution_id, study_date, study_time, accession_number, description,"
        " modalities, series_count,"
        " instance_count, attributes, created_at, updated_at"
    )
    with connection.cursor() as cursor:
        with cursor.copy(f"COPY {Study._meta.db_table} ({columns}) FROM STDIN") as copy:
            while data := buf.read(1 << 20):
                copy.write(data)
        # As autovacuum would soon after a bulk load: statistics, and the visibility map
        # that lets index-only scans skip the table.
        cursor.execute(f"VACUUM ANALYZE {Study._meta.db_table}")
    return time.perf_counter() - start


def available() -> bool:
    return shutil.which("createdb") is not None
