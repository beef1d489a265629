"""The ingest service on damaged files: each is stored and served back as it was sent, or
refused with a reason leaving no object, no row and no spool file behind."""

import itertools
import tempfile
from pathlib import Path

from hypothesis import event, given
from hypothesis import strategies as st
from pydicom import dcmread

from studies import storage
from studies.models import Instance, Series, Study
from tests.studies.conftest import ingest, pydicom_file, stored_files
from tests.studies.fuzz_dicom import fuzz_settings, mutate, mutation

FUZZ = fuzz_settings(40)
# Small files of each kind: explicit and implicit VR, big endian, encapsulated, sequences.
NAMES = [
    "CT_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "JPEG2000.dcm",
    "waveform_ecg.dcm",
    "reportsi.dcm",
    "rtplan.dcm",
]


# Numbers for new UIDs, never 0 (a UID component has no leading zero).
_SERIAL = itertools.count(1)


def with_new_uids(data: bytes, name: str) -> bytes:
    """``data`` with its study, series and instance UIDs replaced by new ones of the same
    length (its structure unchanged): each example stores a new instance."""
    ds = dcmread(pydicom_file(name), stop_before_pixels=True)
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        old = str(ds[keyword].value).encode()
        new = f"2.25.{next(_SERIAL)}.9".ljust(len(old), "9")[: len(old)]
        data = data.replace(old, new.encode())
    return data


def counts() -> tuple[int, int, int]:
    return Study.objects.count(), Series.objects.count(), Instance.objects.count()


@st.composite
def damaged(draw: st.DrawFn) -> tuple[str, list[tuple]]:
    """A pydicom file's name and the changes to make to it."""
    name = draw(st.sampled_from(NAMES))
    changes = draw(st.lists(mutation(pydicom_file(name)), min_size=1, max_size=3))
    return name, changes


@FUZZ
@given(case=damaged())
def test_a_damaged_file_is_stored_as_sent_or_refused_leaving_nothing(
    cast, private_storage, settings, case
):
    name, changes = case
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = with_new_uids(mutate(pydicom_file(name).read_bytes(), changes), name)
        path = folder / "mutant.dcm"
        path.write_bytes(data)
        before, files = counts(), stored_files(private_storage)
        result = ingest(path)
    event(f"{result.status}: {result.reason[:50]}")
    if result.status == "stored":
        instance = Instance.objects.get(sop_instance_uid=result.sop_instance_uid)
        stored = b"".join(storage.object_chunks(key=instance.storage_key))
        assert stored[128:] == data[128:]
        assert instance.size == len(data)
        assert counts()[2] == before[2] + 1
    else:
        assert result.status in ("rejected", "conflict", "duplicate"), result
        assert result.reason or result.status == "duplicate"
        assert counts() == before
        assert stored_files(private_storage) == files
    assert list(Path(settings.SPOOL_DIR).iterdir()) == []
