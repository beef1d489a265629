"""Objects on S3: a real S3-compatible server (moto's, on loopback), through django-storages.

Ingest, WADO-RS, frames and fixity as on a local folder; reads streamed through ranged
GETs, so that no object is ever held whole in memory, and resumed where a body breaks.
"""

import gc
import hashlib
import io
import os
import socket
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

import boto3
import pytest
import urllib3
from botocore.exceptions import ResponseStreamingError
from botocore.response import StreamingBody
from django.db import DatabaseError
from pydicom import dcmread
from pydicom.encaps import get_frame
from pydicom.uid import generate_uid

from studies import s3, storage
from studies.models import Instance
from studies.tasks import fixity_check
from tests.conftest import client_for

from .conftest import dicom_copy, ingest, multipart_parts, pydicom_file, share_with_alice

MiB = 1024 * 1024
CREDENTIALS = {"aws_access_key_id": "anim-test", "aws_secret_access_key": "anim-test-secret"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory) -> str:
    """moto's S3 server in its own process: its memory is not this process's."""
    port = _free_port()
    log = tmp_path_factory.mktemp("moto") / "server.log"
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"moto_server did not start: {log.read_text()[-500:]}")
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def bucket(settings, s3_endpoint, private_storage) -> "boto3.resources.base.ServiceResource":
    """A new bucket, and the gateway's storage set to it as STORAGE_BACKEND=s3 sets it."""
    name = f"anim-{uuid.uuid4().hex[:12]}"
    resource = boto3.resource(
        "s3", endpoint_url=s3_endpoint, region_name="us-east-1", **CREDENTIALS
    )
    resource.create_bucket(Bucket=name)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "studies.s3.S3Storage"},
    }
    settings.AWS_STORAGE_BUCKET_NAME = name
    settings.AWS_S3_ENDPOINT_URL = s3_endpoint
    settings.AWS_S3_REGION_NAME = "us-east-1"
    settings.AWS_ACCESS_KEY_ID = CREDENTIALS["aws_access_key_id"]
    settings.AWS_SECRET_ACCESS_KEY = CREDENTIALS["aws_secret_access_key"]
    return resource.Bucket(name)


def _keys(bucket) -> list[str]:
    return sorted(o.key for o in bucket.objects.all())


def _path(result, suffix: str = "") -> str:
    return (
        f"/dicomweb/studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}{suffix}"
    )


def _shared(cast, tmp_path, name: str, **attributes):
    result = ingest(dicom_copy(tmp_path, name, patient_id="CHEM-X1", **attributes))
    share_with_alice(cast)
    return result


def test_an_instance_goes_to_the_bucket_and_comes_back_byte_identical(cast, tmp_path, bucket):
    source = dicom_copy(tmp_path, "CT_small.dcm", patient_id="CHEM-X1")
    sent = source.read_bytes()
    result = ingest(source)
    share_with_alice(cast)
    assert result.status == "stored"
    key = Instance.objects.get().storage_key
    assert _keys(bucket) == [key]
    assert not (tmp_path / "storage").exists()  # nothing went to the local folder
    response = client_for("alice", "CHL").get(_path(result), HTTP_ACCEPT="application/dicom")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == sent


@pytest.mark.parametrize(
    ("name", "native"),
    [("rtdose.dcm", True), ("examples_ybr_color.dcm", False)],
)
def test_frames_come_from_the_bucket(cast, tmp_path, bucket, name, native):
    result = _shared(cast, tmp_path, name)
    original = dcmread(pydicom_file(name))
    count = int(original.NumberOfFrames)
    response = client_for("alice", "CHL").get(_path(result, f"/frames/{count},1"))
    assert response.status_code == 200
    parts = [data for _, data in multipart_parts(response)]
    if native:
        size = len(original.PixelData) // count
        expected = [original.PixelData[(count - 1) * size :], original.PixelData[:size]]
    else:
        expected = [
            get_frame(original.PixelData, index, number_of_frames=count) for index in (count - 1, 0)
        ]
    assert parts == expected


def test_fixity_on_the_bucket_tells_an_altered_object_from_an_intact_one(cast, tmp_path, bucket):
    for _ in range(2):
        ingest(dicom_copy(tmp_path))
    altered, intact = Instance.objects.order_by("pk")
    data = bytearray(bucket.Object(altered.storage_key).get()["Body"].read())
    data[-1] ^= 0xFF
    bucket.put_object(Key=altered.storage_key, Body=bytes(data))
    assert fixity_check(instance_ids=[altered.pk, intact.pk]) == [altered.sop_instance_uid]


def test_a_missing_object_is_refused_before_the_answer_starts(cast, tmp_path, bucket):
    result = _shared(cast, tmp_path, "CT_small.dcm")
    bucket.Object(Instance.objects.get().storage_key).delete()
    response = client_for("alice", "CHL").get(_path(result), HTTP_ACCEPT="application/dicom")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "OBJECT_UNAVAILABLE"


def test_a_failed_index_leaves_nothing_in_the_bucket(
    cast, tmp_path, bucket, failing_instance_insert
):
    with pytest.raises(DatabaseError):
        ingest(dicom_copy(tmp_path))
    assert _keys(bucket) == []
    assert not Instance.objects.exists()


# --- reading through ranged GETs -----------------------------------------------------------


@pytest.fixture
def large_object(bucket) -> tuple[str, bytes]:
    """48 MiB of random bytes (no period a wrong offset could land on) under a key, as
    storage would name it."""
    data = os.urandom(48 * MiB)
    key = "dicom/1.2/3.4/5.6.large.dcm"
    bucket.put_object(Key=key, Body=data)
    return key, data


def _peak_while(fn) -> tuple[object, int]:
    """fn's result and the peak of Python's allocations while it ran, boto3's client made
    beforehand (its service model alone takes some 10 MiB, once per process)."""
    storage.storage().connection.meta.client  # noqa: B018
    gc.collect()
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_large_object_streams_without_being_held_whole(large_object):
    key, data = large_object

    def digest_streamed() -> tuple[int, str]:
        size = 0
        for chunk in storage.object_chunks(key=key):
            size += len(chunk)
        return size, storage.object_sha256(key=key)

    (size, digest), peak = _peak_while(digest_streamed)
    assert (size, digest) == (len(data), hashlib.sha256(data).hexdigest())
    # A few chunks in flight, not the object's 48 MiB (django-storages' own S3File held
    # it all: its spooled file never rolls over with AWS_S3_MAX_MEMORY_SIZE=0).
    assert peak < 8 * MiB


def test_a_range_at_the_end_is_read_without_the_rest(large_object, ranges_asked):
    key, data = large_object
    ranges = ranges_asked
    got, peak = _peak_while(
        lambda: storage.object_read(key=key, start=len(data) - 1000, length=1000)
    )
    assert got == data[-1000:]
    assert ranges == [f"bytes={len(data) - 1000}-"]
    assert peak < 4 * MiB


def test_reads_and_seeks_ask_the_fewest_ranges(large_object, ranges_asked):
    key, data = large_object
    ranges = ranges_asked
    with storage.object_reader(key=key) as reader:
        assert reader.read(10) == data[:10]
        reader.seek(5)  # back, within what was read: no request
        assert reader.read(10) == data[5:15]
        reader.seek(2 * MiB)  # a little ahead: read on through the same body
        assert reader.read(100) == data[2 * MiB : 2 * MiB + 100]
        reader.seek(40 * MiB)  # far ahead: a new range
        assert reader.read(100) == data[40 * MiB : 40 * MiB + 100]
        assert reader.tell() == 40 * MiB + 100
    assert ranges == ["bytes=0-", f"bytes={40 * MiB}-"]


def test_a_body_that_breaks_is_resumed_where_it_broke(large_object, monkeypatch, ranges_asked):
    key, data = large_object
    ranges = ranges_asked
    _break_bodies(monkeypatch, after=[5 * MiB, 3 * MiB])
    assert b"".join(storage.object_chunks(key=key)) == data
    assert ranges == ["bytes=0-", f"bytes={5 * MiB}-", f"bytes={8 * MiB}-"]


def test_a_body_that_keeps_breaking_makes_the_object_unavailable(large_object, monkeypatch, caplog):
    key, _ = large_object
    # Three breaks in a row, nothing read in between: a break after progress starts anew.
    _break_bodies(monkeypatch, after=[MiB] + [0] * (s3.RESUMES + 1))
    with pytest.raises(storage.ObjectUnavailable):
        b"".join(storage.object_chunks(key=key))
    assert "cannot be read: ResponseStreamingError" in caplog.text


def test_a_tls_error_that_botocore_lets_through_is_resumed_too(large_object, monkeypatch):
    key, data = large_object
    _break_bodies(monkeypatch, after=[3 * MiB], error=urllib3.exceptions.SSLError("bad MAC"))
    assert b"".join(storage.object_chunks(key=key)) == data


def test_a_tls_error_that_keeps_coming_makes_the_object_unavailable(large_object, monkeypatch):
    key, _ = large_object
    tls = urllib3.exceptions.SSLError("bad record MAC")
    _break_bodies(monkeypatch, after=[0] * (s3.RESUMES + 1), error=tls)
    with pytest.raises(storage.ObjectUnavailable):
        b"".join(storage.object_chunks(key=key))


def test_a_server_that_ignores_the_range_is_not_read_from_the_wrong_offset(large_object):
    key, _ = large_object
    events = storage.storage().connection.meta.client.meta.events

    def without_range(params, **kwargs) -> None:
        params["headers"].pop("Range", None)  # the whole object comes back, with 200

    events.register("before-call.s3.GetObject", without_range)
    try:
        with storage.object_reader(key=key) as reader:
            reader.seek(MiB)
            with pytest.raises(storage.ObjectUnavailable):
                reader.read(10)
    finally:
        events.unregister("before-call.s3.GetObject", without_range)


def test_a_seek_for_data_or_holes_is_unsupported(large_object):
    key, _ = large_object
    fp = storage.object_open(key=key)
    raw = s3.ranged(fp).raw
    with pytest.raises(io.UnsupportedOperation):
        raw.seek(0, os.SEEK_DATA)
    raw.close()


def test_an_upload_to_a_missing_bucket_is_a_misconfiguration_naming_no_file(
    settings, bucket, tmp_path
):
    from botocore.exceptions import ClientError

    from studies.spool import spool_path
    from studies.storage_errors import StorageMisconfigured

    source = tmp_path / "one.dcm"
    source.write_bytes(b"x" * 1000)
    spooled = spool_path(source)
    settings.AWS_STORAGE_BUCKET_NAME = "anim-no-such-bucket"
    with pytest.raises(StorageMisconfigured) as raised:
        storage.object_put(key="dicom/1/2/3.dcm", spooled=spooled)
    assert isinstance(raised.value.__cause__, ClientError)  # botocore's own, naming no file
    for told in (raised.value, raised.value.__cause__):
        assert str(spooled.path) not in str(told)
    assert "anim-no-such-bucket" not in raised.value.message


def test_an_object_replaced_while_read_is_not_mixed_with_its_new_bytes(
    large_object, bucket, monkeypatch
):
    key, data = large_object
    with storage.object_reader(key=key) as reader:
        assert reader.read(10) == data[:10]
        bucket.put_object(Key=key, Body=b"x" * len(data))  # a new ETag
        reader.seek(30 * MiB)
        with pytest.raises(storage.ObjectUnavailable):
            reader.read(10)


@pytest.fixture
def ranges_asked(bucket) -> list[str]:
    """The Range header of every GetObject sent during the test, as botocore sends it."""
    asked: list[str] = []
    events = storage.storage().connection.meta.client.meta.events

    def recorded(params, **kwargs) -> None:
        asked.append(params["headers"].get("Range", ""))

    events.register("before-call.s3.GetObject", recorded)
    yield asked
    events.unregister("before-call.s3.GetObject", recorded)


def _break_bodies(monkeypatch, *, after: list[int], error: Exception | None = None) -> None:
    """Each new body raises ``error`` (botocore's streaming error by default) once it has
    given ``after[n]`` bytes (n counts the bodies); bodies beyond the list read normally."""
    budgets = list(after)
    real = s3.RangedObject._get

    def breaking(self, position: int):
        body = real(self, position)
        if budgets:
            body = _BreakingBody(body, budgets.pop(0), error)
        return body

    monkeypatch.setattr(s3.RangedObject, "_get", breaking)


class _BreakingBody:
    def __init__(self, body: StreamingBody, budget: int, error: Exception | None) -> None:
        self._body, self._budget = body, budget
        self._error = error or ResponseStreamingError(error=ConnectionResetError("reset"))

    def read(self, amt: int) -> bytes:
        if self._budget <= 0:
            raise self._error
        data = self._body.read(min(amt, self._budget))
        self._budget -= len(data)
        return data

    def close(self) -> None:
        self._body.close()


def test_a_spool_file_is_uploaded_from_its_path_not_read_ahead_into_memory(bucket, tmp_path):
    from studies.spool import spool_path

    source = tmp_path / "large.dcm"
    source.write_bytes(os.urandom(MiB) * 64)
    spooled = spool_path(source)
    key, peak = _peak_while(lambda: storage.object_put(key="dicom/1/2/3.dcm", spooled=spooled))
    assert bucket.Object(key).content_length == 64 * MiB
    assert not spooled.path.exists()
    # boto3 reads each part from the file as it sends it; given a file object it read up to
    # ten 8 MiB parts ahead (69 MiB at the peak for this upload).
    assert peak < 24 * MiB


# --- a study's objects checked before its retrieval streams --------------------------------


def _study_of_two(cast, tmp_path):
    first = _shared(cast, tmp_path, "CT_small.dcm")
    second = ingest(
        dicom_copy(tmp_path, "MR_small.dcm", patient_id="CHEM-X1", study_uid=first.study_uid)
    )
    return first, second


def test_a_study_with_an_object_lost_from_the_bucket_comes_as_partial_content(
    cast, tmp_path, bucket
):
    first, second = _study_of_two(cast, tmp_path)
    lost = Instance.objects.get(sop_instance_uid=second.sop_instance_uid).storage_key
    bucket.Object(lost).delete()
    response = client_for("alice", "CHL").get(f"/dicomweb/studies/{first.study_uid}")
    assert response.status_code == 206
    assert '"B000: 1 of 2 instances cannot be read' in response["Warning"]
    ((_, data),) = multipart_parts(response)
    kept = Instance.objects.get(sop_instance_uid=first.sop_instance_uid).storage_key
    assert data == bucket.Object(kept).get()["Body"].read()


def test_a_study_whose_objects_are_all_in_the_bucket_is_listed_once(
    cast, tmp_path, bucket, monkeypatch
):
    first, _ = _study_of_two(cast, tmp_path)
    listed = []
    real = s3.S3Storage.objects_under
    monkeypatch.setattr(
        s3.S3Storage,
        "objects_under",
        lambda self, folder: listed.append(folder) or real(self, folder),
    )
    response = client_for("alice", "CHL").get(f"/dicomweb/studies/{first.study_uid}")
    assert response.status_code == 200
    assert len(multipart_parts(response)) == 2
    assert listed == [f"dicom/{first.study_uid}"]


def test_a_bucket_that_cannot_be_listed_is_an_error_before_any_byte(
    cast, tmp_path, bucket, monkeypatch, caplog
):
    from botocore.exceptions import EndpointConnectionError

    first, _ = _study_of_two(cast, tmp_path)

    def unreachable(self, folder):
        raise EndpointConnectionError(endpoint_url="https://s3.example/bucket")

    monkeypatch.setattr(s3.S3Storage, "objects_under", unreachable)
    response = client_for("alice", "CHL").get(f"/dicomweb/studies/{first.study_uid}")
    assert response.status_code == 503  # the storage is down, not the object lost
    error = response.json()["error"]
    assert error["code"] == "OBJECT_UNAVAILABLE"
    assert error["message"].startswith("The stored copies of these instances cannot be read")
    assert "cannot be listed: EndpointConnectionError" in caplog.text
    assert "s3.example" not in caplog.text


def test_a_second_preview_of_a_series_leaves_the_first_in_the_bucket(
    cast, tmp_path, bucket, monkeypatch
):
    """Two workers may render a series' preview; the one that finds it made deletes its own
    object, never the one the series names (S3 overwrites a name that is saved again)."""
    from studies import tasks
    from studies.models import Series

    ingest(dicom_copy(tmp_path, "examples_overlay.dcm"))
    instance = Instance.objects.get()
    Series.objects.update(preview_key="")
    render = tasks.render_frame
    made: list[str] = []

    def render_while_another_worker_finishes(*args, **kwargs):
        if not made:
            made.append("")  # the other worker's own rendering goes straight through
            made[0] = tasks.series_preview(instance.pk)
        return render(*args, **kwargs)

    monkeypatch.setattr(tasks, "render_frame", render_while_another_worker_finishes)
    second = tasks.series_preview(instance.pk)
    first = made[0]
    assert Series.objects.get().preview_key == first
    assert second != first
    assert first in _keys(bucket)
    assert second not in _keys(bucket)
    assert b"".join(storage.object_chunks(key=first)).startswith(b"\x89PNG")


def test_the_sweep_deletes_unindexed_objects_from_the_bucket(cast, tmp_path, bucket):
    """S3 has no folders: the sweep lists the objects under dicom/ rather than walk them."""
    import datetime

    from studies.tasks import orphans_sweep

    ingest(dicom_copy(tmp_path))
    indexed = Instance.objects.get().storage_key
    orphans = [f"dicom/1.2/3.4/5.{n}.abc.dcm" for n in range(3)]
    for key in orphans:
        bucket.put_object(Key=key, Body=b"x")
    assert orphans_sweep(older_than=datetime.timedelta(hours=1)) == []  # all too recent
    # Older than "now plus a minute": every object qualifies by its age.
    assert sorted(orphans_sweep(older_than=-datetime.timedelta(minutes=1))) == orphans
    assert _keys(bucket) == [indexed]


# --- rendering a frame from the bucket -----------------------------------------------------


def _many_frames(tmp_path, frames: int) -> Path:
    """CT_small's 128x128 frame repeated: a native multi-frame instance of 32 KiB frames."""
    ds = dcmread(pydicom_file("CT_small.dcm"))
    ds.NumberOfFrames = frames
    ds.PixelData = ds.PixelData * frames
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.PatientID = "CHEM-X1"
    path = tmp_path / "frames.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _bytes_read(monkeypatch) -> list[int]:
    """The bytes every ranged reader gives, as they are read."""
    given: list[int] = []
    real = s3.RangedObject.readinto

    def counted(self, buffer) -> int:
        size = real(self, buffer)
        given.append(size)
        return size

    monkeypatch.setattr(s3.RangedObject, "readinto", counted)
    return given


def test_a_frame_is_rendered_from_the_bucket_reading_only_as_far_as_it(
    cast, tmp_path, bucket, monkeypatch
):
    result = ingest(_many_frames(tmp_path, 400))  # 12.5 MiB of pixel data
    share_with_alice(cast)
    given = _bytes_read(monkeypatch)
    response = client_for("alice", "CHL").get(
        _path(result, "/frames/400/rendered"), HTTP_ACCEPT="image/png"
    )
    assert response.status_code == 200
    assert response.content.startswith(b"\x89PNG")
    # The header and the last frame (32 KiB), each with the reader's buffer: not the object.
    assert sum(given) < 2 * MiB


def test_a_bucket_failing_under_a_rendering_is_the_storage_error_not_a_bad_frame(
    cast, tmp_path, bucket, monkeypatch
):
    result = _shared(cast, tmp_path, "CT_small.dcm")
    _break_bodies(monkeypatch, after=[0] * (s3.RESUMES + 1))
    response = client_for("alice", "CHL").get(
        _path(result, "/frames/1/rendered"), HTTP_ACCEPT="image/png"
    )
    assert response.status_code == 503  # the storage is down, not the object lost
    assert response.json()["error"]["code"] == "OBJECT_UNAVAILABLE"


def test_a_stow_while_the_bucket_is_unreachable_is_a_503_and_stores_nothing(
    cast, tmp_path, bucket, settings
):
    from .test_dicomweb import stow

    settings.AWS_S3_ENDPOINT_URL = f"http://127.0.0.1:{_free_port()}"  # nothing listens
    data = dicom_copy(tmp_path, patient_id="CHL-Y1").read_bytes()
    response = stow(client_for("chl-pacs", "CHL"), [data])
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "STORAGE_UNAVAILABLE"
    assert not Instance.objects.exists()
    assert list((tmp_path / "spool").glob("*")) == []


def test_a_stow_to_a_bucket_that_does_not_exist_is_a_500_of_its_own_not_a_retry(
    cast, tmp_path, bucket, settings
):
    """A misconfiguration no retry fixes: not told to the sender as "unavailable, retry"."""
    from .test_dicomweb import stow

    settings.AWS_STORAGE_BUCKET_NAME = "anim-no-such-bucket"
    data = dicom_copy(tmp_path, patient_id="CHL-Y1").read_bytes()
    response = stow(client_for("chl-pacs", "CHL"), [data])
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "STORAGE_MISCONFIGURED"
    assert "NoSuchBucket" in error["message"]
    assert "anim-no-such-bucket" not in error["message"]
    assert not Instance.objects.exists()
    assert list((tmp_path / "spool").glob("*")) == []


# --- import_dicom when the bucket fails ----------------------------------------------------


@pytest.fixture
def uploads_fail_after(bucket):
    """Every upload after the first ``n`` raises what botocore raises for an unreachable
    endpoint (where the client sends its request: no retry delays the test)."""
    from botocore.exceptions import EndpointConnectionError

    events = storage.storage().connection.meta.client.meta.events
    allowed = []

    def unreachable(**kwargs) -> None:
        if not allowed or allowed[0] <= 0:
            raise EndpointConnectionError(endpoint_url="https://s3.example/bucket")
        allowed[0] -= 1

    def arm(n: int) -> None:
        allowed.append(n)
        events.register("before-call.s3.PutObject", unreachable)

    yield arm
    events.unregister("before-call.s3.PutObject", unreachable)


def test_an_import_stops_with_its_summary_and_a_reason_when_the_bucket_is_unreachable(
    cast, tmp_path, bucket, uploads_fail_after, capsys
):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    tree = tmp_path / "tree"
    tree.mkdir()
    for _ in range(3):
        dicom_copy(tree, patient_id="CHEM-X1")
    uploads_fail_after(1)
    with pytest.raises(CommandError) as raised:
        call_command("import_dicom", str(tree), "--institution", "CHEM", "--no-progress")
    message = str(raised.value)
    assert "the gateway's storage is unavailable (object store unreachable)" in message
    assert "s3.example" not in message
    assert "\n" not in message  # one line: manage.py prints it as "CommandError: ..."
    assert "3 file(s): 1 stored, 0 duplicate, 0 rejected" in capsys.readouterr().out
    assert len(_keys(bucket)) == Instance.objects.count() == 1
    assert list((tmp_path / "spool").glob("*")) == []


def test_backfill_reads_an_old_instances_header_from_the_bucket(cast, tmp_path, bucket, settings):
    """On S3 the object is spooled to disk to have its header read, then the copy removed."""
    from django.core.management import call_command

    from .test_backfill_bulkdata import _without_references

    ingest(dicom_copy(tmp_path, "CT_small.dcm", patient_id="CHEM-X1"))
    instance = Instance.objects.get()
    today = instance.metadata
    Instance.objects.filter(pk=instance.pk).update(
        metadata=_without_references(today), metadata_version=1
    )
    out = io.StringIO()
    call_command("backfill_bulkdata", stdout=out)
    assert "done: 1 instances: 1 updated, 0 already current, 0 failed" in out.getvalue()
    assert Instance.objects.get().metadata == today
    assert not list(Path(settings.SPOOL_DIR).glob("*"))
