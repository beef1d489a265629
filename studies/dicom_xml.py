"""The Native DICOM Model XML (PS3.19 A.1) of a DICOM JSON (PS3.18 F.2) dataset."""

import functools
import json
import re
from collections.abc import Iterator

from pydicom.datadict import keyword_for_tag

NAMESPACE = "http://dicom.nema.org/PS3.19/models/NativeDICOM"
_PROLOG = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    f'<NativeDicomModel xmlns="{NAMESPACE}" xml:space="preserve">'
)
_NAME_GROUPS = ("Alphabetic", "Ideographic", "Phonetic")
_NAME_PARTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")
# What XML 1.0 cannot carry (2.2 Char): C0 controls but TAB, LF and CR, lone surrogates,
# U+FFFE and U+FFFF. DICOM text may hold some (FF in LT, ST, UT; NUL in a careless value).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
REPLACEMENT = "\ufffd"
# CR would be read back as LF (XML 1.0 2.11); TAB, LF, CR in an attribute as spaces (3.3.3).
_TEXT_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"}
_ATTRIBUTE_ESCAPES = {**_TEXT_ESCAPES, '"': "&quot;", "\t": "&#9;", "\n": "&#10;"}
_TEXT_SPECIAL = re.compile("[&<>\r]")
_ATTRIBUTE_SPECIAL = re.compile('[&<>\r"\t\n]')


def native_model_from_text(text: str) -> bytes:
    """A stored DICOM JSON object's text as a UTF-8 NativeDicomModel document; numbers keep
    the digits stored (a DS of 1.50 stays "1.50", not Python's 1.5)."""
    dataset = json.loads(text, parse_int=str, parse_float=str)
    return native_model(dataset)


def native_model(dataset: dict) -> bytes:
    """A DICOM JSON dataset as a UTF-8 NativeDicomModel document (PS3.19 A.1)."""
    return "".join([_PROLOG, *_attributes(dataset), "</NativeDicomModel>\n"]).encode()


def _attributes(dataset: dict) -> Iterator[str]:
    """Each element as a DicomAttribute, in tag order (PS3.5 7.1: ascending); Group Length
    (gggg,0000) left out, as PS3.19 A.1.1 requires."""
    for tag in sorted(dataset):
        element = dataset[tag]
        # Not a DICOM JSON element: nothing to say of it (never a broken document).
        if not tag.endswith("0000") and isinstance(element, dict):
            yield from _attribute(tag, element, _creator_of(tag, dataset))


def _attribute(tag: str, element: dict, creator: str | None) -> Iterator[str]:
    vr = str(element.get("vr", "UN"))
    head = f'<DicomAttribute tag="{_attr(tag)}" vr="{_attr(vr)}"'
    keyword = _keyword(tag)
    if keyword:
        head += f' keyword="{keyword}"'
    if creator is not None:
        head += f' privateCreator="{_attr(creator)}"'
    body = list(_content(vr, element))
    if not body:
        yield head + "/>"
        return
    yield head + ">"
    yield from body
    yield "</DicomAttribute>"


def _content(vr: str, element: dict) -> Iterator[str]:
    """What PS3.19 A.1.6 allows in a DicomAttribute: a BulkData, an InlineBinary, or Values,
    Items or PersonNames numbered from 1; nothing for an empty element."""
    if "BulkDataURI" in element:
        yield f'<BulkData uri="{_attr(str(element["BulkDataURI"]))}"/>'
        return
    if "InlineBinary" in element:
        yield f"<InlineBinary>{_text(str(element['InlineBinary']))}</InlineBinary>"
        return
    values = element.get("Value")
    if not isinstance(values, list):
        return
    render = _item if vr == "SQ" else _person_name if vr == "PN" else _value
    for number, value in enumerate(values, start=1):
        yield from render(number, value)


def _value(number: int, value: object) -> Iterator[str]:
    # JSON's null, an empty value among others (PS3.18 F.2.5), is an empty Value.
    if value is None or value == "":
        yield f'<Value number="{number}"/>'
    else:
        yield f'<Value number="{number}">{_text(str(value))}</Value>'


def _item(number: int, item: object) -> Iterator[str]:
    dataset = item if isinstance(item, dict) else {}
    if not dataset:
        yield f'<Item number="{number}"/>'
        return
    yield f'<Item number="{number}">'
    yield from _attributes(dataset)
    yield "</Item>"


def _person_name(number: int, name: object) -> Iterator[str]:
    """PS3.18 F.2.2's groups of a name, each as its components (PS3.5 6.2.1)."""
    groups = name if isinstance(name, dict) else {"Alphabetic": name} if name else {}
    inner = [_name_group(group, groups.get(group)) for group in _NAME_GROUPS]
    content = "".join(inner)
    if not content:
        yield f'<PersonName number="{number}"/>'
    else:
        yield f'<PersonName number="{number}">{content}</PersonName>'


def _name_group(group: str, text: object) -> str:
    if not isinstance(text, str) or not text:
        return ""
    components = split_name(text)
    parts = "".join(
        f"<{part}>{_text(value)}</{part}>"
        for part, value in zip(_NAME_PARTS, components, strict=False)
        if value
    )
    return f"<{group}>{parts}</{group}>" if parts else ""


def split_name(text: str) -> list[str]:
    """A name group's five components; carets past the fourth (invalid in DICOM) stay in
    the suffix, so that nothing of the name is lost."""
    return text.split("^", 4)


def _creator_of(tag: str, dataset: dict) -> str | None:
    """The Private Creator that reserved a private element's block (PS3.5 7.8.1), None for
    a public element or a creator element itself (gggg,0010-00FF)."""
    if len(tag) != 8 or not _is_hex(tag) or int(tag[3], 16) % 2 == 0:
        return None
    block = int(tag[4:6], 16)
    if block < 0x10:
        return None
    creator = dataset.get(f"{tag[:4]}00{tag[4:6]}", {})
    values = creator.get("Value") if isinstance(creator, dict) else None
    return str(values[0]) if isinstance(values, list) and values and values[0] else None


@functools.lru_cache(maxsize=4096)  # the same few hundred tags in every header
def _keyword(tag: str) -> str:
    """The data dictionary's keyword of a public tag (repeating groups too), else ''."""
    if len(tag) != 8 or not _is_hex(tag) or int(tag[3], 16) % 2 == 1:
        return ""
    return keyword_for_tag(int(tag, 16)) or ""


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def _text(value: str) -> str:
    value = _NOT_XML.sub(REPLACEMENT, value)
    return _TEXT_SPECIAL.sub(lambda m: _TEXT_ESCAPES[m[0]], value)


def _attr(value: str) -> str:
    value = _NOT_XML.sub(REPLACEMENT, value)
    return _ATTRIBUTE_SPECIAL.sub(lambda m: _ATTRIBUTE_ESCAPES[m[0]], value)
