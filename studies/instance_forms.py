"""Which form of stored instances the client accepts (PS3.18 8.7.3.5, 8.7.8): multipart or
bare application/dicom in the transfer syntax they are stored in, or their metadata."""

from collections.abc import Collection
from dataclasses import dataclass
from typing import NoReturn

from anim_gateway.errors import ApplicationError
from studies import accept

MULTIPART, BARE, METADATA = "multipart", "bare", "metadata"
DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"


@dataclass(frozen=True)
class Choice:
    """A form the client accepts, and the transfer syntax it names (None: any)."""

    form: str
    syntax: str | None


def choices(wanted: str | None) -> list[Choice]:
    """The forms the client accepts, most preferred first; 406 NOT_ACCEPTABLE when none."""
    refused = accept.refused(wanted)
    found = []
    for media_range in accept.media_ranges(wanted or "*/*"):
        form = _offer(media_range, refused)
        if form is not None:
            syntax = media_range.param("transfer-syntax")
            named = form != METADATA and syntax not in ("", "*")
            found.append(Choice(form, syntax if named else None))
    if not found:
        raise ApplicationError(
            f'Accept: this resource is served as multipart/related; type="{DICOM}"'
            f" or {DICOM_JSON}.",
            code="NOT_ACCEPTABLE",
            status_code=406,
        )
    return found


def served_form(
    options: list[Choice], stored: Collection[str], *, refused: frozenset[str], one: bool
) -> str:
    """The form the instances, stored in the syntaxes ``stored``, are served in: that of the
    most preferred choice whose syntax is stored (or any); each instance must be in a syntax
    the client accepts in that form (for a study or series, ``one`` False, in any form: they
    come in multipart/related all the same), and refuses not (q=0). The bytes are those
    stored: no syntax is transcoded. 406 NOT_ACCEPTABLE naming the syntaxes not accepted.
    """
    dicom = [c for c in options if c.form != METADATA]
    first = next((c for c in dicom if c.syntax is None or c.syntax in stored), None)
    if first is not None:
        named = {c.syntax for c in dicom if c.form == first.form or not one}
        left_out = {s for s in stored if s in refused or (None not in named and s not in named)}
        if not left_out:
            return first.form
    _refuse(stored if first is None else left_out)


def refused_syntaxes(wanted: str | None) -> frozenset[str]:
    """The transfer syntaxes the client refuses (q=0) for application/dicom, under a wildcard
    too: 'multipart/related; type="application/dicom"; transfer-syntax=X; q=0, */*'."""
    return frozenset(
        params["transfer-syntax"]
        for media_type, params in accept.refusals(wanted)
        if params.get("transfer-syntax", "*") != "*" and _is_dicom(media_type, params)
    )


def _is_dicom(media_type: str, params: dict[str, str]) -> bool:
    if media_type == "multipart/related":
        return params.get("type", DICOM).lower() == DICOM
    return media_type == DICOM


def _refuse(syntaxes: Collection[str]) -> NoReturn:
    listed = ", ".join(sorted(syntaxes))
    raise ApplicationError(
        f"Accept: instances here are stored in transfer syntax {listed}, and served only as"
        f' stored: accept it (type="{DICOM}"; transfer-syntax={listed.split(", ")[0]}), or'
        " any with transfer-syntax=*.",
        code="NOT_ACCEPTABLE",
        status_code=406,
    )


def _offer(media_range: accept.MediaRange, refused: frozenset[str]) -> str | None:
    if media_range.media_type in ("*/*", "multipart/*"):
        # A wildcard: multipart/related, else a bare instance, unless the client refused it.
        forms = (("multipart/related", MULTIPART), (DICOM, BARE))
        return next(
            (
                form
                for media_type, form in forms
                if not accept.refused_under(refused, media_type, media_range.media_type)
            ),
            None,
        )
    if media_range.media_type == "multipart/related":
        # Another type of part (application/dicom+xml, say) is not served here.
        part_type = media_range.param("type", DICOM).lower()
        return MULTIPART if part_type == DICOM else None
    if media_range.media_type == DICOM_JSON:
        return METADATA
    return BARE if media_range.media_type == DICOM else None
