"""An audit log that cannot be written refuses a store as an outage (retry later), never as
"not authorized", which a sender takes as final."""

import pytest
from pydicom import dcmread

from audit.errors import AuditUnavailable
from studies.models import Instance
from tests.conftest import client_for

from .conftest import dicom_copy, stored_files
from .test_dicomweb import stow
from .test_listener import _associate, listener  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def _audit_down(monkeypatch) -> None:
    def unavailable(event):
        raise AuditUnavailable("the audit table cannot be written")

    monkeypatch.setattr("consent.auditing.append", unavailable)


def _refused_while_down_then_stored(running, tmp_path, monkeypatch) -> None:
    """One association: a C-STORE while the outage lasts (monkeypatched), then the same
    instance once it is over."""
    ds = dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    assoc = _associate(running)
    refused = assoc.send_c_store(ds)
    monkeypatch.undo()
    stored = assoc.send_c_store(ds)
    assoc.release()
    assert refused.Status == 0xA700  # Out of Resources: the sender retries it
    assert stored.Status == 0x0000
    assert Instance.objects.filter(sop_instance_uid=ds.SOPInstanceUID).count() == 1


def test_a_stow_while_the_audit_log_is_down_is_a_503(cast, tmp_path, private_storage, monkeypatch):
    data = dicom_copy(tmp_path, patient_id="CHL-Y1").read_bytes()
    client = client_for("chl-pacs", "CHL")
    _audit_down(monkeypatch)
    response = stow(client, [data])
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "AUDIT_UNAVAILABLE"
    assert not Instance.objects.exists()
    assert stored_files(private_storage) == []
    assert list((tmp_path / "spool").glob("*")) == []
    monkeypatch.undo()
    assert stow(client, [data]).status_code == 200


def test_a_c_store_while_the_audit_log_is_down_is_out_of_resources(
    listener,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    _audit_down(monkeypatch)
    _refused_while_down_then_stored(listener, tmp_path, monkeypatch)


def test_a_c_store_the_gate_cannot_decide_stays_a_refusal(listener, tmp_path, monkeypatch):  # noqa: F811
    """GATE_ERROR is audited, so the database was up: a fault in deciding that repeats is
    refused as final (0x0124), not turned into an outage its sender would retry for ever.
    (A database lost while deciding fails the audit append too: AUDIT_UNAVAILABLE, above.)"""
    from consent import gate

    def fault(*args, **kwargs):
        raise ValueError("a fault in deciding")

    monkeypatch.setattr(gate, "_decide_one", fault)
    ds = dcmread(dicom_copy(tmp_path, patient_id="CHEM-X1"))
    assoc = _associate(listener)
    refused = assoc.send_c_store(ds)
    assoc.release()
    assert refused.Status == 0x0124
    assert not Instance.objects.exists()
