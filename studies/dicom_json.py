"""DICOM JSON (PS3.18 F.2) results of QIDO-RS and the STOW-RS response dataset."""

import json
from collections.abc import Callable

from pydicom.datadict import tag_for_keyword

from studies.dicom import INSTANCE_TAGS, SERIES_TAGS, STUDY_TAGS
from studies.ingest import IngestResult
from studies.models import Instance, Series
from studies.selectors import StudyHit

# A private block for the human reason of a failure (PS3.5 7.8): creator and element.
PRIVATE_CREATOR = ("00090010", "ANIM_GATEWAY")
FAILURE_TEXT_TAG = "00091001"

_NAMES = {**STUDY_TAGS, **SERIES_TAGS, **INSTANCE_TAGS}
_TAGS = {keyword: tag for tag, keyword in _NAMES.items()}


def _element(vr: str, *values: object) -> dict:
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def _included(attributes: dict, metadata: dict, includefield: frozenset[str]) -> dict:
    """Extra attributes asked for with includefield (keywords or tags; 'all' for everything)."""
    if not includefield:
        return attributes
    if "all" in includefield:
        return {**metadata, **attributes}
    extra = {}
    for item in includefield:
        tag = _tag_of(item)
        if tag in metadata:
            extra[tag] = metadata[tag]
    return {**extra, **attributes}


def _tag_of(item: str) -> str:
    """An includefield item as the tag key of DICOM JSON: any keyword of the data dictionary
    (PS3.18 allows keywords as well as tags), else the item read as a tag."""
    if item in _TAGS:
        return _TAGS[item]
    number = tag_for_keyword(item)
    return f"{number:08X}" if number is not None else item.upper()


def study_result_json(
    study: StudyHit, *, url: str, includefield: frozenset[str] = frozenset()
) -> str:
    """A QIDO-RS study result as JSON text: the stored attributes and the computed ones."""
    computed = {
        "00080061": _element("CS", *[m for m in study.modalities.split("\\") if m]),
        "00081190": _element("UR", url),
        "00201206": _element("IS", study.series_count),
        "00201208": _element("IS", study.instance_count),
    }
    stored = study.attributes_json.strip()
    if includefield or not _splices(stored, computed):
        attributes = json.loads(stored)
        return json.dumps(_included({**attributes, **computed}, attributes, includefield))
    extra = json.dumps(computed)[1:-1]
    if not stored[1:-1].strip():
        return "{" + extra + "}"
    return f"{stored[:-1]}, {extra}}}"


def _splices(stored: str, computed: dict) -> bool:
    """Whether the computed attributes may be appended to the stored object's text: it is
    an object and holds none of them (which would then appear twice)."""
    is_object = stored.startswith("{") and stored.endswith("}")
    return is_object and not any(f'"{tag}"' in stored for tag in computed)


def series_result(series: Series, *, url: str, includefield: frozenset[str] = frozenset()) -> dict:
    attributes = {
        **series.attributes,
        "0020000D": _element("UI", series.study.study_uid),
        "00081190": _element("UR", url),
        "00201209": _element("IS", series.instance_count),
    }
    return _included(attributes, series.attributes, includefield)


def instance_result(
    instance: Instance,
    *,
    url: str,
    includefield: frozenset[str] = frozenset(),
    with_series: bool = False,
) -> dict:
    """A QIDO-RS instance result (PS3.18 Table 10.6.3-5); ``with_series`` for a search of a
    study's instances, whose results hold their series' attributes too (10.6.3.3.3)."""
    metadata = instance.metadata
    tags = (*SERIES_TAGS, *INSTANCE_TAGS) if with_series else INSTANCE_TAGS
    attributes = {tag: metadata[tag] for tag in tags if tag in metadata}
    if with_series:
        attributes["00201209"] = _element("IS", instance.series.instance_count)
    attributes.update(
        {
            # Known: a fixity check that found the stored copy lost or altered marks it.
            "00080056": _element("CS", "UNAVAILABLE" if instance.fixity_ok is False else "ONLINE"),
            "0020000D": _element("UI", instance.study.study_uid),
            "0020000E": _element("UI", instance.series.series_uid),
            "00083002": _element("UI", instance.transfer_syntax_uid),
            "00081190": _element("UR", url),
        }
    )
    return _included(attributes, metadata, includefield)


def store_response(
    results: list[IngestResult],
    *,
    instance_url: Callable[..., str],
    study_url: Callable[[str], str],
) -> dict:
    """The STOW-RS response dataset (PS3.18 10.5.3, Table I.1-1): the study's Retrieve URL,
    referenced and failed instances."""
    referenced, failed = [], []
    for result in results:
        item = {
            "00081150": _element("UI", *([result.sop_class_uid] if result.sop_class_uid else [])),
            "00081155": _element(
                "UI", *([result.sop_instance_uid] if result.sop_instance_uid else [])
            ),
        }
        if result.ok:
            item["00081190"] = _element("UR", instance_url(result))
            referenced.append(item)
        else:
            item["00081197"] = _element("US", result.failure_code)
            item[PRIVATE_CREATOR[0]] = _element("LO", PRIVATE_CREATOR[1])
            item[FAILURE_TEXT_TAG] = _element("LT", result.reason)
            failed.append(item)
    # Retrieve URL is type 2: always there, empty unless the instances stored are of one study.
    stored_studies = {r.study_uid for r in results if r.ok}
    study_uid = stored_studies.pop() if len(stored_studies) == 1 else ""
    body: dict = {"00081190": _element("UR", *([study_url(study_uid)] if study_uid else []))}
    if failed:
        body["00081198"] = _element("SQ", *failed)
    if referenced:
        body["00081199"] = _element("SQ", *referenced)
    return body
