"""ATNA forwarding over syslog/TLS: in seq order, remembered, caught up after an outage."""

import re
from xml.etree import ElementTree as ET

import pytest

from audit.forwarding import ForwardingFailed, forward_pending
from audit.models import ForwardState
from audit.tasks import forward_to_syslog

from .syslog_listener import SyslogListener, self_signed

pytestmark = pytest.mark.django_db

HEADER = re.compile(
    rb"^<85>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ anim-gateway \d+ IHE\+RFC-3881 - "
)


@pytest.fixture
def certs(tmp_path):
    return self_signed(tmp_path)


@pytest.fixture
def listener(certs, settings):
    server = SyslogListener(*certs)
    settings.AUDIT_SYSLOG_HOST = "localhost"
    settings.AUDIT_SYSLOG_PORT = server.port
    settings.AUDIT_SYSLOG_CA_FILE = str(certs[0])
    yield server
    server.stop()


def seqs_of(messages: list[bytes]) -> list[int]:
    """The gateway's seq of each message, from its DICOM audit message."""
    found = []
    for message in messages:
        xml = message.split(b"\xef\xbb\xbf", 1)[1]
        root = ET.fromstring(xml)  # noqa: S314 (our own output)
        user = root.find("ActiveParticipant")
        found.append(int(user.get("UserID").removeprefix("user")))
    return found


def test_it_does_nothing_when_no_repository_is_configured(append_events, settings):
    settings.AUDIT_SYSLOG_HOST = ""
    append_events(2)
    assert forward_pending() == 0
    assert not ForwardState.objects.exists()


def test_it_forwards_rfc5424_messages_with_dicom_audit_xml(append_events, listener):
    append_events(3)
    assert forward_pending() == 3
    messages = listener.wait_for(3)
    assert len(messages) == 3
    for message in messages:
        assert HEADER.match(message), message[:120]
        xml = message.split(b" \xef\xbb\xbf", 1)[1]
        root = ET.fromstring(xml)  # noqa: S314 (our own output)
        assert root.tag == "AuditMessage"
        assert root.find("EventIdentification/EventID").get("csd-code") == "110103"
    assert ForwardState.objects.get().last_seq == 3


def test_it_forwards_in_seq_order_across_batches(append_events, listener):
    for n in range(7):
        append_events(1, actor_username=f"user{n + 1}")
    assert forward_pending(batch_size=3) == 7
    assert seqs_of(listener.wait_for(7)) == [1, 2, 3, 4, 5, 6, 7]


def test_it_catches_up_after_an_outage_without_loss_or_duplicates(
    append_events, listener, certs, settings
):
    for n in range(3):
        append_events(1, actor_username=f"user{n + 1}")
    assert forward_pending() == 3
    listener.wait_for(3)
    port = listener.port
    listener.stop()  # the repository goes down
    for n in range(3, 6):
        append_events(1, actor_username=f"user{n + 1}")
    with pytest.raises(ForwardingFailed):
        forward_pending()
    state = ForwardState.objects.get()
    assert state.last_seq == 3
    assert state.last_error
    assert forward_to_syslog.apply().get() == 0  # the scheduled task just waits for next time
    revived = SyslogListener(*certs, port=port)
    try:
        assert forward_pending() == 3
        assert seqs_of(revived.wait_for(3)) == [4, 5, 6]
        assert forward_pending() == 0  # nothing twice
        assert seqs_of(listener.messages) == [1, 2, 3]
        assert ForwardState.objects.get().last_error == ""
    finally:
        revived.stop()


def test_it_refuses_a_repository_with_an_untrusted_certificate(
    append_events, listener, settings, tmp_path
):
    settings.AUDIT_SYSLOG_CA_FILE = str(self_signed_elsewhere(tmp_path))
    append_events(1)
    with pytest.raises(ForwardingFailed, match="CERTIFICATE_VERIFY_FAILED"):
        forward_pending()
    assert listener.messages == []
    assert ForwardState.objects.get().last_seq == 0


def self_signed_elsewhere(tmp_path):
    directory = tmp_path / "other"
    directory.mkdir()
    return self_signed(directory)[0]


def test_it_forwards_from_the_celery_task(append_events, listener):
    append_events(2)
    assert forward_to_syslog.apply().get() == 2
    assert len(listener.wait_for(2)) == 2
