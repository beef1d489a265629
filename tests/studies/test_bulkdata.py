"""Bulk data (PS3.18 F.2.6, 10.4.1.1.5): referenced in metadata, served from the stored object."""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from audit.models import AuditEvent
from tests.conftest import client_for

from .conftest import dicom_copy, ingest, multipart_parts, share_with_alice

ROOT = "http://testserver/dicomweb/"


@pytest.fixture
def alice(cast):
    share_with_alice(cast)
    return client_for("alice", "CHL")


def _instance_url(result) -> str:
    return (
        f"{ROOT}studies/{result.study_uid}/series/{result.series_uid}"
        f"/instances/{result.sop_instance_uid}"
    )


def _metadata(client, result) -> dict:
    response = client.get(f"/dicomweb/studies/{result.study_uid}/metadata")
    assert response.status_code == 200
    (item,) = json.loads(b"".join(response.streaming_content))
    return item


def _bulk_values(metadata: dict, ds: Dataset) -> Iterator[tuple[str, bytes]]:
    """(BulkDataURI, the element's value as pydicom reads it) at any depth."""
    for key, element in metadata.items():
        if "BulkDataURI" in element:
            yield element["BulkDataURI"], ds[int(key, 16)].value
        elif element.get("vr") == "SQ":
            items = ds[int(key, 16)].value
            for item_json, item in zip(element.get("Value", []), items, strict=True):
                yield from _bulk_values(item_json, item)


def _get(client, url: str, accept: str | None = None):
    assert url.startswith("http://testserver/")
    headers = {"HTTP_ACCEPT": accept} if accept else {}
    return client.get(url.removeprefix("http://testserver"), **headers)


def _served(client, url: str) -> bytes:
    """The value at ``url``, checked the same in both forms served."""
    multipart = _get(client, url)
    assert multipart.status_code == 200
    assert multipart["Content-Type"].startswith(
        'multipart/related; type="application/octet-stream"'
    )
    ((part_type, body),) = multipart_parts(multipart)
    assert part_type == "application/octet-stream"
    bare = _get(client, url, "application/octet-stream")
    assert bare["Content-Type"] == "application/octet-stream"
    assert b"".join(bare.streaming_content) == body
    return body


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CT_small.dcm", 2),  # Pixel Data, and a private OB
        ("MR_small_implicit.dcm", 1),  # Pixel Data in implicit VR
        ("waveform_ecg.dcm", 2),  # Waveform Data in two items of a sequence
        ("examples_overlay.dcm", 4),  # Overlay Data in two groups, their own, Pixel Data
    ],
)
def test_metadata_references_bulk_data_that_serves_exactly_its_bytes(
    alice, tmp_path, name, expected
):
    copy = dicom_copy(tmp_path, name, patient_id="CHEM-X1")
    result = ingest(copy)
    found = list(_bulk_values(_metadata(alice, result), dcmread(copy)))
    assert len(found) == expected
    for uri, value in found:
        assert uri.startswith(f"{_instance_url(result)}/bulkdata/")
        assert _served(alice, uri) == value
    events = AuditEvent.objects.filter(action="study.retrieve", outcome="permit")
    assert events.count() == 2 * expected


def _nested(tmp_path: Path, *, item_charset: bool, undefined: bool) -> tuple[Path, list[bytes]]:
    """A file with bulk data two sequences deep: an item with its own character set makes
    pydicom parse the sequence (the quick encoding declines it)."""
    values = [os.urandom(2000) for _ in range(3)]
    ds = dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    inner, outer = Dataset(), Dataset()
    inner.ICCProfile = values[0]
    if item_charset:
        outer.SpecificCharacterSet = "ISO_IR 100"
    outer.add_new(0x54001010, "OW", values[1])
    outer.OpticalPathSequence = Sequence([inner])
    ds.WaveformSequence = Sequence([outer])
    ds["WaveformSequence"].is_undefined_length = undefined
    ds.ICCProfile = values[2]
    out = tmp_path / "nested.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out, values


@pytest.mark.parametrize("reader", ["quick", "pydicom"])
@pytest.mark.parametrize("undefined", [False, True])
@pytest.mark.parametrize("item_charset", [False, True])
def test_nested_bulk_data_is_served_from_its_place_in_the_file(
    alice, tmp_path, monkeypatch, reader, undefined, item_charset
):
    from studies import dicom

    if reader == "pydicom":
        monkeypatch.setattr(dicom, "read_plain", lambda path, **_options: None)
    path, values = _nested(tmp_path, item_charset=item_charset, undefined=undefined)
    result = ingest(path)
    metadata = _metadata(alice, result)
    found = list(_bulk_values(metadata, dcmread(path)))
    # Pixel Data, CT_small's private OB, the top-level ICC profile, the two in the sequence.
    assert len(found) == 5
    assert sorted(value for _, value in found if value in values) == sorted(values)
    for uri, value in found:
        assert _served(alice, uri) == value


@pytest.mark.parametrize("name", ["image_dfl.dcm", "MR_small_bigendian.dcm"])
def test_deflated_and_big_endian_instances_keep_no_bulk_data_reference(alice, tmp_path, name):
    # Deflated: offsets in the inflated stream are not the stored object's; big endian:
    # bulk data is served little endian. Their bulk data is left out, as before.
    result = ingest(dicom_copy(tmp_path, name, patient_id="CHEM-X1"))
    assert result.ok
    assert "BulkDataURI" not in json.dumps(_metadata(alice, result))


@pytest.fixture
def ct(alice, tmp_path):
    return ingest(dicom_copy(tmp_path, patient_id="CHEM-X1"))


@pytest.mark.parametrize(
    "reference", ["abc", "1-", "-1", "1-0", "01-2", "1-2-3", "²-1", "9" * 16 + "-1"]
)
def test_a_malformed_reference_is_refused_naming_it(alice, ct, reference):
    response = alice.get(
        f"{_instance_url(ct).removeprefix('http://testserver')}/bulkdata/{reference}"
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("reference:")


def test_a_reference_the_header_does_not_hold_is_not_served(alice, ct, tmp_path):
    other = ingest(dicom_copy(tmp_path, "MR_small.dcm", patient_id="CHEM-X1"))
    (uri,) = [
        u
        for u, _ in _bulk_values(
            _metadata(alice, other), dcmread(dicom_copy(tmp_path, "MR_small.dcm"))
        )
    ]
    offset, length = (int(n) for n in uri.rsplit("/", 1)[1].split("-"))
    here = f"{_instance_url(ct)}/bulkdata"
    for reference in (f"{offset}-{length + 1}", f"{offset + 1}-{length}", "0-132"):
        response = _get(alice, f"{here}/{reference}")
        assert response.status_code == 404
        assert (
            response.json()["error"]["message"] == "reference: no such bulk data in this instance."
        )
    # Another instance's reference under this instance's URL.
    ct_refs = [
        u.rsplit("/", 1)[1]
        for u, _ in _bulk_values(_metadata(alice, ct), dcmread(dicom_copy(tmp_path)))
    ]
    foreign = uri.rsplit("/", 1)[1]
    if foreign not in ct_refs:
        assert _get(alice, f"{here}/{foreign}").status_code == 404


def test_an_accept_of_neither_form_is_refused(alice, ct):
    (uri,) = [
        e["BulkDataURI"]
        for e in _metadata(alice, ct).values()
        if "BulkDataURI" in e and e["vr"] != "OB"
    ]
    assert _get(alice, uri, "application/dicom+json").status_code == 406


def test_an_instance_search_with_includefield_serves_the_urls(alice, ct):
    response = alice.get(f"/dicomweb/studies/{ct.study_uid}/instances", {"includefield": "all"})
    (result,) = response.json()
    uri = result["7FE00010"]["BulkDataURI"]
    assert uri.startswith(f"{_instance_url(ct)}/bulkdata/")
    assert _served(alice, uri) == dcmread(Path(settings_path(ct))).PixelData


def settings_path(result) -> Path:
    from studies import storage
    from studies.models import Instance

    instance = Instance.objects.get(sop_instance_uid=result.sop_instance_uid)
    return storage.object_local_path(key=instance.storage_key)


def test_a_hidden_studys_bulk_data_looks_like_an_unknown_one(alice, cast, ct):
    from .conftest import hide

    (uri, _), *_ = _bulk_values(_metadata(alice, ct), dcmread(settings_path(ct)))
    hide(cast.xavier, ct.study_uid)
    hidden = _get(alice, uri)
    unknown = _get(alice, uri.replace(ct.study_uid, generate_uid()))
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json() == unknown.json()


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        ('multipart/related; type="*/*"', 200),  # dicomweb-client's default
        ('multipart/related; type="application/octet-stream"; transfer-syntax=*', 200),
        ("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1", 200),
        ("application/octet-stream; transfer-syntax=1.2.840.10008.1.2.2", 406),
        ('multipart/related; type="image/jpeg"', 406),
    ],
)
def test_it_serves_what_the_client_accepts(alice, ct, accept, status):
    (uri, value), *_ = _bulk_values(_metadata(alice, ct), dcmread(settings_path(ct)))
    response = _get(alice, uri, accept)
    assert response.status_code == status
    if status == 200:
        body = b"".join(response.streaming_content)
        assert value in body
