"""Raw DICOM upper-layer PDUs for the listener's tests: an association request, and reading."""

import socket
import struct

from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.presentation import build_context
from pynetdicom.sop_class import CTImageStorage, Verification

ECHO, CT = 1, 3  # the presentation contexts of association_rq


def association_rq(calling: str, max_pdu: int = 16382) -> bytes:
    """An A-ASSOCIATE-RQ to ANIM_GATEWAY: Verification on context 1, CT Image Storage on 3."""
    request = A_ASSOCIATE()
    request.application_context_name = "1.2.840.10008.3.1.1.1"
    request.calling_ae_title = calling
    request.called_ae_title = "ANIM_GATEWAY"
    contexts = [build_context(Verification), build_context(CTImageStorage)]
    for context, number in zip(contexts, (ECHO, CT), strict=True):
        context.context_id = number
    request.presentation_context_definition_list = contexts
    maximum = MaximumLengthNotification()
    maximum.maximum_length_received = max_pdu
    request.user_information = [maximum]
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(request)
    return pdu.encode()


def read_pdu(sock: socket.socket) -> tuple[int, bytes]:
    """(type, body) of the next PDU; (0, b"") once the peer closed the connection."""
    header = read_exactly(sock, 6)
    if len(header) < 6:
        return 0, b""
    return header[0], read_exactly(sock, struct.unpack(">L", header[2:])[0])


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes, or fewer once the peer closed or reset the connection."""
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk
    return data
