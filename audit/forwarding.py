"""Forward the log to a hospital's ATNA audit record repository: DICOM audit messages over
syslog on TLS (RFC 5424 messages, RFC 5425 octet-counted framing), in seq order.

What was forwarded is remembered per destination (ForwardState.last_seq), advanced after each
message the TLS connection accepted; after an outage the next run resumes from there, so
nothing is skipped and nothing is sent twice. Syslog has no application-level
acknowledgement: a repository that crashes with messages in its socket buffer loses them.
"""

import logging
import os
import re
import socket
import ssl

from django.conf import settings
from django.db import transaction

from audit import canonical
from audit.exports.dicom import message_xml
from audit.models import AuditEvent, ForwardState
from audit.verification import head_seq

logger = logging.getLogger(__name__)

BATCH_SIZE = 200
# authpriv (10) x 8 + notice (5), as IHE ATNA asks; MSGID names the payload's schema.
PRIORITY = 85
MSGID = "IHE+RFC-3881"
APP_NAME = "anim-gateway"
_NOT_PRINTABLE = re.compile(r"[^\x21-\x7e]")


class ForwardingFailed(Exception):
    """The repository could not be reached or refused the connection; retried next run."""


def syslog_frame(event: AuditEvent, *, hostname: str) -> bytes:
    """One RFC 5424 message, framed with its octet count (RFC 5425 section 4.3)."""
    header = (
        f"<{PRIORITY}>1 {canonical.encode_time(event.time).replace('+00:00', 'Z')} "
        f"{hostname} {APP_NAME} {os.getpid()} {MSGID} -"
    )
    # The BOM marks the message as UTF-8 (RFC 5424 section 6.4).
    message = header.encode("ascii") + b" \xef\xbb\xbf" + message_xml(event).encode("utf-8")
    return str(len(message)).encode("ascii") + b" " + message


def _hostname() -> str:
    return _NOT_PRINTABLE.sub("", socket.gethostname())[:255] or "-"


def _tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=settings.AUDIT_SYSLOG_CA_FILE or None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    cert = getattr(settings, "AUDIT_SYSLOG_CERT_FILE", "")
    if cert:
        # ATNA's node authentication: the repository may require our certificate.
        context.load_cert_chain(cert, getattr(settings, "AUDIT_SYSLOG_KEY_FILE", "") or None)
    return context


def _connect(host: str, port: int) -> ssl.SSLSocket:
    raw = socket.create_connection((host, port), timeout=10)
    try:
        return _tls_context().wrap_socket(raw, server_hostname=host)
    except (OSError, ssl.SSLError):
        raw.close()
        raise


def forward_pending(*, batch_size: int = BATCH_SIZE, max_batches: int = 100) -> int:
    """Send every event not yet forwarded, oldest first; return how many were sent.

    Raises
    ------
    ForwardingFailed
        When the repository is unreachable; what was sent before the failure is remembered.
    """
    host = settings.AUDIT_SYSLOG_HOST
    if not host:
        return 0
    destination = f"{host}:{settings.AUDIT_SYSLOG_PORT}"
    total = 0
    for _ in range(max_batches):
        sent = _forward_batch(host=host, destination=destination, batch_size=batch_size)
        total += sent
        if sent < batch_size:
            break
    return total


def _forward_batch(*, host: str, destination: str, batch_size: int) -> int:
    error: Exception | None = None
    # The state row's lock keeps a second worker from sending the same events (PostgreSQL).
    with transaction.atomic():
        ForwardState.objects.get_or_create(destination=destination)
        state = ForwardState.objects.select_for_update().get(destination=destination)
        # Up to the head only: a row inserted past it was not appended through the log.
        pending = AuditEvent.objects.filter(seq__gt=state.last_seq, seq__lte=head_seq())
        events = list(pending.order_by("seq")[:batch_size])
        if not events:
            return 0
        start = state.last_seq
        try:
            _send(events, host=host, state=state)
        except (OSError, ssl.SSLError) as exc:
            error = exc
        ForwardState.objects.filter(pk=state.pk).update(
            last_seq=state.last_seq, last_error=str(error or "")[:500]
        )
    if error is not None:
        logger.warning(
            "ATNA forwarding to %s stopped after #%s: %s", destination, state.last_seq, error
        )
        raise ForwardingFailed(f"{destination}: {error}") from error
    return state.last_seq - start


def _send(events: list[AuditEvent], *, host: str, state: ForwardState) -> None:
    hostname = _hostname()
    with _connect(host, settings.AUDIT_SYSLOG_PORT) as connection:
        for event in events:
            connection.sendall(syslog_frame(event, hostname=hostname))
            state.last_seq = event.seq
        _close_gracefully(connection)


def _close_gracefully(connection: ssl.SSLSocket) -> None:
    """close_notify both ways. Closing with unread input (TLS 1.3 session tickets) would
    send a TCP reset, and a reset makes the peer drop what it has not read yet."""
    connection.settimeout(2)
    try:
        connection.unwrap()
    except (OSError, ssl.SSLError) as exc:
        logger.debug("The syslog repository did not answer close_notify: %s", exc)
