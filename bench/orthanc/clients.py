"""DICOMweb (requests) and DIMSE (pynetdicom) clients that treat both servers alike."""

import os
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

DICOM_PART = "application/dicom"


def enable_tcp_nodelay() -> None:
    """Make pynetdicom set TCP_NODELAY on every socket it creates or accepts (idempotent)."""
    from pynetdicom import transport

    if getattr(transport, "_bench_nodelay", False):
        return
    create = transport.AssociationSocket._create_socket

    def _create_socket(self, address):
        sock = create(self, address)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    get_request = transport.AssociationServer.get_request

    def _get_request(self):
        sock, addr = get_request(self)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr

    transport.AssociationSocket._create_socket = _create_socket
    transport.AssociationServer.get_request = _get_request
    transport._bench_nodelay = True


class MultipartBody:
    """A multipart/related body streamed from files, with a known length (no chunked upload)."""

    def __init__(self, paths: list[str], boundary: str) -> None:
        self.boundary = boundary
        head = f"Content-Type: {DICOM_PART}\r\n\r\n".encode()
        self._pieces: list[bytes | str] = []
        for path in paths:
            self._pieces += [f"--{boundary}\r\n".encode() + head, path, b"\r\n"]
        self._pieces.append(f"--{boundary}--\r\n".encode())
        self.length = sum(
            len(p) if isinstance(p, bytes) else os.path.getsize(p) for p in self._pieces
        )
        self._iter = self._chunks()
        self._chunk = memoryview(b"")  # the rest of the current chunk, not copied

    def __len__(self) -> int:
        return self.length

    def _chunks(self) -> Iterator[bytes]:
        for piece in self._pieces:
            if isinstance(piece, bytes):
                yield piece
                continue
            with open(piece, "rb") as fp:
                while chunk := fp.read(1024 * 1024):
                    yield chunk

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (http.client reads 8 KiB at a time): sliced off the current
        chunk without copying its rest, so the client does not limit what it measures."""
        if size < 0:
            rest = bytes(self._chunk) + b"".join(self._iter)
            self._chunk = memoryview(b"")
            return rest
        while not self._chunk:
            chunk = next(self._iter, None)
            if chunk is None:
                return b""
            self._chunk = memoryview(chunk)
        out, self._chunk = self._chunk[:size], self._chunk[size:]
        return out.tobytes()


@dataclass
class DicomWeb:
    """One server's DICOMweb root and credentials; a requests session per thread."""

    name: str
    root: str
    headers: dict = field(default_factory=dict)
    _local: threading.local = field(default_factory=threading.local)

    @property
    def session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
            # Orthanc gzips any answer when asked (50 MB in ~3 s instead of 0.5 s); the gateway
            # never does. Both are measured serving the bytes as they are.
            self._local.session.headers["Accept-Encoding"] = "identity"
            self._local.session.headers.update(self.headers)
        return self._local.session

    def stow(self, paths: list[str]) -> tuple[int, int]:
        """POST one STOW-RS request; (HTTP status, number of failed instances)."""
        body = MultipartBody(paths, boundary=uuid.uuid4().hex)
        response = self.session.post(
            f"{self.root}/studies",
            data=body,
            headers={
                "Content-Type": f'multipart/related; type="{DICOM_PART}"; boundary={body.boundary}',
                "Accept": "application/dicom+json",
                "Content-Length": str(len(body)),
            },
            timeout=900,
        )
        failed = 0
        if response.status_code in (200, 202, 409):
            failed = len(response.json().get("00081198", {}).get("Value", []))
        elif response.status_code >= 400:
            failed = len(paths)
        return response.status_code, failed

    def qido(self, path: str, params: dict) -> int:
        """GET a QIDO-RS query; the number of results (raises on an HTTP error)."""
        response = self.session.get(
            f"{self.root}/{path}",
            params=params,
            headers={"Accept": "application/dicom+json"},
            timeout=120,
        )
        response.raise_for_status()
        return len(response.json()) if response.content else 0

    def metadata(self, study_uid: str) -> int:
        response = self.session.get(
            f"{self.root}/studies/{study_uid}/metadata",
            headers={"Accept": "application/dicom+json"},
            timeout=120,
        )
        response.raise_for_status()
        return len(response.json())

    def retrieve(self, path: str) -> int:
        """GET a WADO-RS multipart resource, streamed; the number of body bytes."""
        response = self.session.get(
            f"{self.root}/{path}",
            headers={"Accept": f'multipart/related; type="{DICOM_PART}"; transfer-syntax=*'},
            stream=True,
            timeout=900,
        )
        response.raise_for_status()
        total = 0
        for chunk in response.iter_content(1024 * 1024):
            total += len(chunk)
        return total


def instance_path(study: str, series: str, sop: str) -> str:
    return f"studies/{study}/series/{series}/instances/{sop}"


def read_meta(path: str) -> tuple[str, str]:
    """(SOP Class UID, Transfer Syntax UID) of a Part 10 file, from its meta header."""
    from pydicom import dcmread

    ds = dcmread(path, stop_before_pixels=True, specific_tags=["SOPClassUID"])
    return str(ds.file_meta.MediaStorageSOPClassUID), str(ds.file_meta.TransferSyntaxUID)


def cstore_study(
    files: list[tuple[str, str, str]], *, host: str, port: int, calling: str, called: str
) -> tuple[int, int]:
    """C-STORE files over one association; (stored, failed). files: (path, sop class, syntax)."""
    from pynetdicom import AE

    enable_tcp_nodelay()
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 600
    contexts = sorted({(c, t) for _, c, t in files})
    for sop_class, syntax in contexts:
        ae.add_requested_context(sop_class, [syntax])
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        return 0, len(files)
    stored = failed = 0
    try:
        for path, _, _ in files:
            status = assoc.send_c_store(Path(path))
            if status and status.Status in (0x0000, 0xB000, 0xB007, 0xB006):
                stored += 1
            else:
                failed += 1
    finally:
        assoc.release()
    return stored, failed
