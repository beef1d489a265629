"""Crafted Part 10 files, byte by byte, for the header reading tests."""

import struct
from pathlib import Path

from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

SOP_CLASS, SOP = b"1.2.840.10008.5.1.4.1.1.7\0", b"1.2.3.4\0"
EXPLICIT_LITTLE = b"1.2.840.10008.1.2.1\0"


def element(tag: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element."""
    group, number = tag >> 16, tag & 0xFFFF
    if vr.decode() in EXPLICIT_VR_LENGTH_32:
        return (
            struct.pack("<HH", group, number) + vr + b"\0\0" + struct.pack("<L", len(value)) + value
        )
    return struct.pack("<HH", group, number) + vr + struct.pack("<H", len(value)) + value


def part10(path: Path, dataset: bytes, *, syntax: bytes = EXPLICIT_LITTLE) -> Path:
    """A Part 10 file of ``dataset`` after its SOP UIDs (explicit VR little endian, unless
    ``syntax`` says otherwise: the caller then encodes ``dataset`` in it)."""
    meta = (
        element(0x00020001, b"OB", b"\0\1")
        + element(0x00020002, b"UI", SOP_CLASS)
        + element(0x00020003, b"UI", SOP)
        + element(0x00020010, b"UI", syntax)
    )
    group_length = element(0x00020000, b"UL", struct.pack("<L", len(meta)))
    uids = b""
    if syntax == EXPLICIT_LITTLE:
        uids = element(0x00080016, b"UI", SOP_CLASS) + element(0x00080018, b"UI", SOP)
    path.write_bytes(b"\0" * 128 + b"DICM" + group_length + meta + uids + dataset)
    return path
