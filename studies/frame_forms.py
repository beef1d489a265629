"""Which form of a frame the client accepts (PS3.18 8.7.3.3): stored, or decoded uncompressed."""

from dataclasses import dataclass

from anim_gateway.errors import ApplicationError
from studies import accept, dicom_decode

OCTETS = "application/octet-stream"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
NATIVE = {IMPLICIT_LE, EXPLICIT_LE, "1.2.840.10008.1.2.2"}

# PS3.18 Table 8.7.3-5: the media type of a compressed frame, by transfer syntax.
COMPRESSED_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}


@dataclass(frozen=True)
class FrameForm:
    """A way the frames of an instance can be served."""

    media_type: str  # the part's bare media type
    transfer_syntaxes: frozenset[str]  # the syntaxes a client may name to be given it
    part_type: str  # the part's Content-Type
    decoded: bool  # decoded from the stored bitstream, else the stored bytes


def frame_form(wanted: str | None, *, transfer_syntax_uid: str) -> FrameForm:
    """The form of the most preferred range the frames can be served in (PS3.18 8.7.8);
    406 NOT_ACCEPTABLE naming the forms there are when the client accepts none."""
    forms = _forms(transfer_syntax_uid)
    refused = accept.refused(wanted) | accept.refused_part_types(wanted)
    form = accept.choose(wanted, lambda media_range: _offer(media_range, forms, refused))
    if form is not None:
        return form
    served = " or ".join(_described(f) for f in forms)
    raise ApplicationError(
        f"Accept: the frames of this instance, stored in transfer syntax"
        f" {transfer_syntax_uid}, are served as {served}.",
        code="NOT_ACCEPTABLE",
        status_code=406,
    )


def _forms(syntax: str) -> list[FrameForm]:
    """The stored form first (what a wildcard gets, as before), then the decoded one."""
    if syntax in NATIVE:
        # Served little endian (PS3.18 8.7.3.3.1), labelled Explicit VR Little Endian, the
        # syntax of those bytes: a client naming Explicit VR Big Endian is not given
        # little-endian words under that name.
        native = f"{OCTETS}; transfer-syntax={EXPLICIT_LE}"
        return [FrameForm(OCTETS, frozenset({IMPLICIT_LE, EXPLICIT_LE}), native, False)]
    media_type = COMPRESSED_TYPES.get(syntax, OCTETS)
    stored = FrameForm(
        media_type, frozenset({syntax}), f"{media_type}; transfer-syntax={syntax}", False
    )
    if not dicom_decode.can_decode(syntax):
        return [stored]
    decoded = FrameForm(
        OCTETS,
        frozenset({IMPLICIT_LE, EXPLICIT_LE}),  # the same bytes, for frames
        f"{OCTETS}; transfer-syntax={EXPLICIT_LE}",
        True,
    )
    return [stored, decoded]


def _offer(
    media_range: accept.MediaRange, forms: list[FrameForm], refused: frozenset[str]
) -> FrameForm | None:
    part_type = _part_type(media_range)
    syntax = media_range.param("transfer-syntax")
    if _names_the_stored(syntax, forms[0]):
        return _stored_offer(part_type, forms[0], refused)
    usable = (f for f in forms if _covers(part_type, f.media_type))
    return next(
        (
            f
            for f in usable
            if not _refused(refused, f, part_type) and _syntax_fits(syntax, f, part_type)
        ),
        None,
    )


def _names_the_stored(syntax: str, stored: FrameForm) -> bool:
    """transfer-syntax=* (any), or the stored syntax itself; the little-endian ones are
    left to the forms' own match (a native instance's, or the decoded one)."""
    if syntax in (IMPLICIT_LE, EXPLICIT_LE):
        return False
    return syntax == "*" or syntax in stored.transfer_syntaxes


def _stored_offer(part_type: str, stored: FrameForm, refused: frozenset[str]) -> FrameForm | None:
    """The stored bytes, as before, under their own media type or application/octet-stream
    (OHIF's type="application/octet-stream"; transfer-syntax=*)."""
    if not (_covers(part_type, stored.media_type) or _covers(part_type, OCTETS)):
        return None
    return None if _refused(refused, stored, part_type) else stored


def _part_type(media_range: accept.MediaRange) -> str:
    """The part's media type: multipart/related's type parameter (any when absent), or a
    bare range's own type, whose frames come in multipart/related all the same."""
    if media_range.media_type == "multipart/related":
        return media_range.param("type", "*/*").lower()
    if media_range.media_type == "multipart/*":
        return "*/*"
    return media_range.media_type


def _syntax_fits(syntax: str, form: FrameForm, part_type: str) -> bool:
    """No syntax named: for application/octet-stream, Explicit VR Little Endian (PS3.18
    8.7.3.3); for a compressed media type or a wildcard, whatever is stored."""
    if not syntax:
        syntax = EXPLICIT_LE if part_type == OCTETS else ""
    return not syntax or syntax in form.transfer_syntaxes


def _covers(part_type: str, media_type: str) -> bool:
    if part_type in ("*/*", media_type):
        return True
    return part_type.endswith("/*") and media_type.startswith(part_type[:-1])


def _refused(refused: frozenset[str], form: FrameForm, part_type: str) -> bool:
    return part_type.endswith("/*") and accept.refused_under(refused, form.media_type, part_type)


def _described(form: FrameForm) -> str:
    """The form as a client would ask for it: the part type's parameters after its type."""
    params = form.part_type.partition(";")[2]
    return f'multipart/related; type="{form.media_type}"' + (f";{params}" if params else "")
