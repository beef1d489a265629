"""manage.py seed_demo_studies: real DICOM studies (pydicom's test files) for the demo patients."""

import io
import warnings
from dataclasses import dataclass

from django.core.management.base import BaseCommand
from django.db import transaction
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from consent.actors import Actor
from consent.models import Institution, PatientIdentifier, Role
from studies.ingest import IngestSession, instance_ingest
from studies.spool import spool_file


@dataclass(frozen=True)
class DemoStudy:
    username: str  # the demo patient; "" for an unreconciled study
    performing: str
    file: str
    date: str
    description: str


# Studies made at different hospitals, so that consent decides what crosses them.
DEMO_STUDIES = [
    DemoStudy("xavier", "CHEM", "CT_small.dcm", "20240105", "CT thorax"),
    DemoStudy("xavier", "CHEM", "MR_small.dcm", "20240312", "MR knee"),
    DemoStudy("xavier", "HRS", "examples_ybr_color.dcm", "20240620", "Ultrasound abdomen"),
    DemoStudy("xavier", "CHL", "JPEG2000.dcm", "20250114", "Secondary capture"),
    DemoStudy("yvonne", "CHL", "liver_1frame.dcm", "20231120", "CT liver"),
    DemoStudy("yvonne", "CHEM", "MR_small_RLE.dcm", "20240402", "MR head"),
    DemoStudy("yvonne", "HRS", "examples_jpeg2k.dcm", "20250202", "Photograph"),
    DemoStudy("zoe", "HRS", "examples_overlay.dcm", "20230918", "MR with overlay"),
    DemoStudy("zoe", "CHDN", "SC_rgb_rle_2frame.dcm", "20240707", "Secondary capture"),
    DemoStudy("", "CHEM", "CT_small.dcm", "20250301", "Not yet reconciled"),
]
DEMO_PATIENT_IDS = {"": "CHEM-9999"}


class Command(BaseCommand):
    help = "Ingest pydicom's test files as studies of the demo patients (idempotent)."

    def handle(self, *args, **options) -> None:
        # The gate refuses to run inside a caller's transaction (seed_demo is atomic): seed
        # once it has committed, or at once when there is none.
        transaction.on_commit(self._seed)

    def _seed(self) -> None:
        counts = {"stored": 0, "duplicate": 0, "restored": 0, "rejected": 0, "conflict": 0}
        for demo in DEMO_STUDIES:
            result = self._ingest(demo)
            if result is None:
                continue
            counts[result.status] += 1
            if not result.ok:
                self.stderr.write(f"  {demo.file} for {demo.username}: {result.reason}")
        self.stdout.write(
            f"Demo studies: {counts['stored']} stored, {counts['duplicate']} already there, "
            f"{counts['rejected'] + counts['conflict']} refused"
        )

    def _ingest(self, demo: DemoStudy):
        identity = _identity(demo)
        if identity is None:
            self.stderr.write(f"  no demo patient {demo.username!r}: run seed_demo first")
            return None
        institution = Institution.objects.get(code=demo.performing)
        actor = Actor(
            role=Role.SYSTEM,
            institution=institution,
            username="seed_demo_studies",
            display_name="Demo seeding",
            channel="cli",
        )
        data = _demo_file(demo, patient_id=identity[0], issuer=identity[1])
        return instance_ingest(session=IngestSession(actor=actor), spooled=spool_file(data))


def _identity(demo: DemoStudy) -> tuple[str, str] | None:
    """(PatientID, IssuerOfPatientID) under which the demo patient is known."""
    if not demo.username:
        return DEMO_PATIENT_IDS[""], demo.performing
    identifier = (
        PatientIdentifier.objects.select_related("institution")
        .filter(patient__user__username=demo.username)
        .order_by("pk")
        .first()
    )
    if identifier is None:
        return None
    return identifier.value, identifier.institution.default_issuer or identifier.institution.code


def _demo_file(demo: DemoStudy, *, patient_id: str, issuer: str) -> io.BytesIO:
    """A copy with deterministic new UIDs and the demo identity: the same bytes on every run."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = dcmread(get_testdata_file(demo.file))
    seed = ["anim-demo", demo.username, demo.performing, demo.file, demo.date]
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[*seed, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*seed, "series"])
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[*seed, "instance"])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientID = patient_id
    ds.IssuerOfPatientID = issuer
    ds.PatientName = f"Demo^{demo.username.capitalize() or 'Unknown'}"
    ds.StudyDate = demo.date
    ds.StudyDescription = demo.description
    ds.AccessionNumber = f"{demo.performing}{demo.date}"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    out.seek(0)
    return out
