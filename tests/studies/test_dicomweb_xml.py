"""The XML form of DICOMweb metadata and search results (PS3.18 10.4.4; PS3.19 A.1)."""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pydicom.datadict import keyword_for_tag

from audit.models import AuditEvent
from studies import dicom_xml, lookups
from tests.conftest import client_for

from .conftest import (
    dicom_copy,
    hide,
    ingest,
    multipart_parts,
    pydicom_file,
    pydicom_files,
    share_with_alice,
)

XML = 'multipart/related; type="application/dicom+xml"'
NS = {"d": dicom_xml.NAMESPACE}
_NAME_PARTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")


@pytest.fixture
def xavier_studies(cast, tmp_path):
    """A CHEM study of Xavier with two instances, and one he hid."""
    shown = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate="20240105"))
    ingest(dicom_copy(tmp_path, "MR_small.dcm", patient_id="CHEM-X1", study_uid=shown.study_uid))
    hidden = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate="20240210"))
    hide(cast.xavier, hidden.study_uid)
    return {"shown": shown, "hidden": hidden}


@pytest.fixture
def alice(cast, xavier_studies):
    share_with_alice(cast)
    return client_for("alice", "CHL")


def _paths(result) -> dict[str, str]:
    study = f"/dicomweb/studies/{result.study_uid}"
    series = f"{study}/series/{result.series_uid}"
    return {
        "study": f"{study}/metadata",
        "series": f"{series}/metadata",
        "instance": f"{series}/instances/{result.sop_instance_uid}/metadata",
    }


# --- reading the XML back as DICOM JSON ----------------------------------------------------


def _parse(body: bytes) -> ET.Element:
    """The document, which must be well-formed. The gateway's own output, not a client's:
    the stdlib parser will do (no entities are declared in it)."""
    return ET.fromstring(body)  # noqa: S314


def _as_json(model: ET.Element) -> dict:
    """The DICOM JSON that a NativeDicomModel (or an Item) says, checking its keywords and
    private creators against the data dictionary and the dataset on the way."""
    dataset = {}
    for attribute in model.findall("d:DicomAttribute", NS):
        tag, vr = attribute.get("tag"), attribute.get("vr")
        element: dict = {"vr": vr}
        bulk = attribute.find("d:BulkData", NS)
        inline = attribute.find("d:InlineBinary", NS)
        if bulk is not None:
            element["BulkDataURI"] = bulk.get("uri")
        elif inline is not None:
            element["InlineBinary"] = inline.text
        elif vr == "SQ":
            element["Value"] = _numbered(attribute, "Item", _as_json)
        elif vr == "PN":
            element["Value"] = _numbered(attribute, "PersonName", _name)
        else:
            element["Value"] = _numbered(attribute, "Value", lambda v: v.text)
        if element.get("Value") == []:
            del element["Value"]
        dataset[tag] = element
        _check_names(attribute, tag, model)
    return dataset


def _numbered(attribute: ET.Element, name: str, read) -> list:
    children = list(attribute)
    assert all(c.tag == f"{{{dicom_xml.NAMESPACE}}}{name}" for c in children)
    assert [c.get("number") for c in children] == [str(n) for n in range(1, len(children) + 1)]
    return [read(c) for c in children]


def _name(person: ET.Element) -> dict | None:
    groups = {}
    for group in person:
        components = [group.findtext(f"d:{part}", "", NS) for part in _NAME_PARTS]
        groups[group.tag.split("}")[1]] = "^".join(components).rstrip("^")
    return groups or None


def _check_names(attribute: ET.Element, tag: str, dataset: ET.Element) -> None:
    number = int(tag, 16)
    if not (number >> 16) % 2:
        assert attribute.get("keyword") == (keyword_for_tag(number) or None)
        assert attribute.get("privateCreator") is None
        return
    assert attribute.get("keyword") is None
    block = tag[4:6]
    if block < "10":
        assert attribute.get("privateCreator") is None
        return
    creator = dataset.find(f"d:DicomAttribute[@tag='{tag[:4]}00{block}']/d:Value", NS)
    assert attribute.get("privateCreator") == (creator.text if creator is not None else None)


def _normalized(dataset: dict) -> dict:
    """DICOM JSON as the XML can say it: empty values as None, a name's trailing empty
    components left out, no empty Value arrays, no Group Length (PS3.19 A.1.1)."""
    out = {}
    for tag, element in dataset.items():
        if tag.endswith("0000"):
            continue
        element = dict(element)
        values = element.pop("Value", [])
        vr = element["vr"]
        if vr == "SQ":
            values = [_normalized(item or {}) for item in values]
        elif vr == "PN":
            values = [_normalized_name(v) for v in values]
        else:
            values = [None if v in (None, "") else v for v in values]
        if values:
            element["Value"] = values
        out[tag] = element
    return out


def _normalized_name(name: dict | None) -> dict | None:
    groups = {k: v.rstrip("^") for k, v in (name or {}).items() if v and v.rstrip("^")}
    return groups or None


def _digits(text: bytes) -> dict | list:
    """JSON with its numbers as the digits sent, as the XML carries them."""
    return json.loads(text, parse_int=str, parse_float=str)


def _xml_datasets(response) -> list[dict]:
    datasets = []
    for part_type, body in multipart_parts(response):
        assert part_type == "application/dicom+xml"
        assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
        model = _parse(body)
        assert model.tag == f"{{{dicom_xml.NAMESPACE}}}NativeDicomModel"
        assert model.get("{http://www.w3.org/XML/1998/namespace}space") == "preserve"
        datasets.append(_as_json(model))
    return datasets


# --- the converter --------------------------------------------------------------------------


def test_it_writes_every_form_of_value_ps3_19_names():
    dataset = {
        "00080005": {"vr": "CS", "Value": ["ISO_IR 192"]},
        "00080008": {"vr": "CS", "Value": ["ORIGINAL", None, "AXIAL"]},
        "00100010": {
            "vr": "PN",
            "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}, None],
        },
        "00101001": {"vr": "PN", "Value": [{"Alphabetic": "Doe^^Middle^Dr^III^extra"}]},
        "00209165": {"vr": "AT", "Value": ["00100020"]},
        "00280010": {"vr": "US", "Value": [512]},
        "00281050": {"vr": "DS", "Value": ["1.50"]},
        "00081115": {"vr": "SQ", "Value": [{"0020000E": {"vr": "UI", "Value": ["1.2"]}}, {}]},
        "00090010": {"vr": "LO", "Value": ["ACME 1"]},
        "00091011": {"vr": "OB", "InlineBinary": "AAEC"},
        "00091012": {"vr": "OB", "BulkDataURI": 'https://h/b?x=1&y="2"'},
        "00100020": {"vr": "LO"},
        "00100000": {"vr": "UL", "Value": [42]},
    }
    model = _parse(dicom_xml.native_model(dataset))
    attribute = {a.get("tag"): a for a in model.findall("d:DicomAttribute", NS)}
    # In tag order, without the Group Length.
    assert list(attribute) == sorted(t for t in dataset if t != "00100000")
    assert [v.text for v in attribute["00080008"]] == ["ORIGINAL", None, "AXIAL"]
    first, second = attribute["00100010"]
    assert first.findtext("d:Alphabetic/d:FamilyName", None, NS) == "Yamada"
    assert first.findtext("d:Ideographic/d:GivenName", None, NS) == "太郎"
    assert first.find("d:Phonetic", NS) is None
    assert (second.get("number"), len(second)) == ("2", 0)
    (name,) = attribute["00101001"]
    parts = [(c.tag.split("}")[1], c.text) for c in name.find("d:Alphabetic", NS)]
    # An empty component is left out; carets past the fourth stay in the suffix.
    assert parts == [
        ("FamilyName", "Doe"),
        ("MiddleName", "Middle"),
        ("NamePrefix", "Dr"),
        ("NameSuffix", "III^extra"),
    ]
    assert attribute["00209165"][0].text == "00100020"
    assert attribute["00280010"][0].text == "512"
    assert attribute["00281050"][0].text == "1.50"
    items = attribute["00081115"].findall("d:Item", NS)
    assert [i.get("number") for i in items] == ["1", "2"]
    assert items[0].find("d:DicomAttribute", NS).get("keyword") == "SeriesInstanceUID"
    assert len(items[1]) == 0
    assert attribute["00091011"].get("privateCreator") == "ACME 1"
    assert attribute["00091011"].get("keyword") is None
    assert attribute["00090010"].get("privateCreator") is None
    assert attribute["00091011"].findtext("d:InlineBinary", None, NS) == "AAEC"
    bulk = attribute["00091012"].find("d:BulkData", NS)
    assert bulk.get("uri") == 'https://h/b?x=1&y="2"'
    assert len(attribute["00100020"]) == 0
    assert attribute["00100020"].get("keyword") == "PatientID"


def test_text_that_xml_cannot_carry_is_replaced_not_written_ill_formed():
    """XML 1.0 has no form for FF (legal in LT, ST and UT), NUL, other C0 controls or a
    lone surrogate: each becomes U+FFFD. TAB, LF and CR come back as sent."""
    text = "a\x0cb\x00c\x1bd\ud800e\tf\ng\rh<&>"
    dataset = {
        "00104000": {"vr": "LT", "Value": [text]},
        "00090010": {"vr": "LO", "Value": ['quote " tab\t line\n\x01']},
        "00091011": {"vr": "LO", "Value": ["x"]},
    }
    body = dicom_xml.native_model(dataset)
    model = _parse(body)
    value = model.find("d:DicomAttribute[@tag='00104000']/d:Value", NS)
    assert value.text == "a\ufffdb\ufffdc\ufffdd\ufffde\tf\ng\rh<&>"
    private = model.find("d:DicomAttribute[@tag='00091011']", NS)
    assert private.get("privateCreator") == 'quote " tab\t line\n\ufffd'


def test_numbers_keep_the_digits_stored():
    body = dicom_xml.native_model_from_text(
        '{"00281050": {"vr": "DS", "Value": [1.50, -0.0, 1e+20]},'
        ' "00280010": {"vr": "US", "Value": [7]}}'
    )
    model = _parse(body)
    values = model.findall("d:DicomAttribute[@tag='00281050']/d:Value", NS)
    assert [v.text for v in values] == ["1.50", "-0.0", "1e+20"]


def _as_xml_and_as_json(client, path: str) -> tuple[list, list]:
    """The data sets of the XML answer to ``path``, and those of its JSON answer, compared
    alike (the JSON's numbers as the XML writes them)."""
    response = client.get(path, HTTP_ACCEPT=XML)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(f"{XML}; boundary=")
    as_json = client.get(path, HTTP_ACCEPT="application/dicom+json")
    body = b"".join(as_json.streaming_content) if as_json.streaming else as_json.content
    return _xml_datasets(response), [_normalized(d) for d in _digits(body)]


# --- WADO-RS metadata ------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["study", "series", "instance"])
def test_metadata_comes_as_xml_to_a_client_that_prefers_it(alice, xavier_studies, level):
    as_xml, expected = _as_xml_and_as_json(alice, _paths(xavier_studies["shown"])[level])
    assert as_xml == expected
    assert len(expected) == (2 if level == "study" else 1)


@pytest.mark.parametrize(
    ("accept", "form"),
    [
        (XML, "xml"),
        (f"{XML}, application/dicom+json;q=0.5", "xml"),
        (f"{XML};q=0.5, application/dicom+json", "json"),
        (f"application/dicom+json;q=0.4, {XML};q=0.9", "xml"),
        ("multipart/related; type=application/dicom+xml; q=1", "xml"),
        ("multipart/*", "xml"),
        ("*/*", "json"),
        (None, "json"),
        ("application/json", "json"),
        ("application/dicom+json;q=0, */*", "xml"),
        ("application/dicom+json;q=0, multipart/related;q=0, */*", None),
        ('multipart/related; type="application/dicom"', None),
        ("application/dicom+xml", None),  # the XML form is multipart only
    ],
)
def test_metadata_comes_in_the_form_the_client_prefers(alice, xavier_studies, accept, form):
    path = _paths(xavier_studies["shown"])["study"]
    response = alice.get(path, **({"HTTP_ACCEPT": accept} if accept else {}))
    if form is None:
        assert response.status_code == 406
        error = response.json()["error"]
        assert error["code"] == "NOT_ACCEPTABLE"
        assert "application/dicom+xml" in error["message"]
        return
    assert response.status_code == 200
    expected = "multipart/related" if form == "xml" else "application/dicom+json"
    assert response["Content-Type"].split(";")[0] == expected


def test_the_accept_parameter_chooses_the_form_over_the_header(alice, xavier_studies):
    path = _paths(xavier_studies["shown"])["series"]
    response = alice.get(path, {"accept": XML}, HTTP_ACCEPT="application/dicom+json")
    assert response["Content-Type"].startswith(XML)
    assert len(_xml_datasets(response)) == 1


def test_the_xml_is_audited_as_the_json_is(alice, xavier_studies):
    path = _paths(xavier_studies["shown"])["instance"]
    events = []
    for accept in ("application/dicom+json", XML):
        before = AuditEvent.objects.count()
        assert alice.get(path, HTTP_ACCEPT=accept).status_code == 200
        assert AuditEvent.objects.count() == before + 1
        events.append(AuditEvent.objects.latest("seq"))
    skip = {"seq", "time", "prev_hash", "hash", "request_id"}
    fields = [f.name for f in AuditEvent._meta.fields if f.name not in skip]
    json_event, xml_event = ([getattr(e, f) for f in fields] for e in events)
    assert xml_event == json_event
    assert (events[1].action, events[1].outcome) == ("study.metadata", "permit")


@pytest.mark.parametrize("level", ["study", "series", "instance"])
def test_a_hidden_study_in_xml_looks_like_an_unknown_one(alice, xavier_studies, level):
    hidden = alice.get(_paths(xavier_studies["hidden"])[level], HTTP_ACCEPT=XML)
    unknown = alice.get(
        _paths(xavier_studies["hidden"])[level].replace(
            xavier_studies["hidden"].study_uid, "1.2.3.999"
        ),
        HTTP_ACCEPT=XML,
    )
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json() == unknown.json()
    event = AuditEvent.objects.filter(study_uid=xavier_studies["hidden"].study_uid).latest("seq")
    assert (event.outcome, event.reason_code) == ("deny", "STUDY_HIDDEN")


def test_without_consent_the_xml_is_refused_as_the_json_is(cast, xavier_studies):
    client = client_for("alice", "CHL")  # no consent shared, no care relationship
    path = _paths(xavier_studies["shown"])["study"]
    as_xml = client.get(path, HTTP_ACCEPT=XML)
    as_json = client.get(path, HTTP_ACCEPT="application/dicom+json")
    assert as_xml.status_code == as_json.status_code == 403
    assert as_xml.json() == as_json.json()
    assert as_xml.json()["error"]["code"] == "NO_CONSENT"
    reasons = AuditEvent.objects.filter(action="study.metadata").values_list(
        "outcome", "reason_code"
    )
    assert list(reasons) == [("deny", "NO_CONSENT")] * 2


@pytest.mark.parametrize("chunk", [200, 1])
def test_the_parts_are_rendered_as_they_are_sent(cast, tmp_path, monkeypatch, chunk):
    """One instance's XML in memory at a time: none is rendered before the answer is read,
    and each part only when the client reaches it (the JSON form streams the same way)."""
    share_with_alice(cast)
    first = ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", InstanceNumber=1))
    for number in (2, 3):
        ingest(
            dicom_copy(
                tmp_path,
                patient_id="CHEM-X1",
                study_uid=first.study_uid,
                series_uid=first.series_uid,
                InstanceNumber=number,
            )
        )
    monkeypatch.setattr(lookups, "METADATA_CHUNK", chunk)
    rendered = []
    original = dicom_xml.native_model_from_text
    monkeypatch.setattr(
        dicom_xml, "native_model_from_text", lambda text: rendered.append(1) or original(text)
    )
    response = client_for("alice", "CHL").get(_paths(first)["study"], HTTP_ACCEPT=XML)
    assert response.streaming
    assert rendered == []
    pieces = iter(response.streaming_content)
    next(pieces)  # the first part's headers
    next(pieces)  # its body
    assert len(rendered) == 1
    assert b"".join(pieces).count(b"<NativeDicomModel") == 2
    assert len(rendered) == 3


@pytest.mark.parametrize("name", pydicom_files(), ids=lambda p: Path(p).name)
def test_the_xml_of_every_pydicom_file_says_what_its_json_says(cast, name):
    """Element for element: tags, VRs, keywords, private creators, values, names and their
    components, sequences, bulk data URIs, inline binary and empty values."""
    result = ingest(Path(name))
    if result.status != "stored":
        assert result.reason  # refused with a reason, as the round-trip test has it
        return
    bob = client_for("bob", "CHEM")  # the study is unreconciled: his institution's own
    path = _paths(result)["instance"]
    as_json = bob.get(path, HTTP_ACCEPT="application/dicom+json")
    as_xml = bob.get(path, HTTP_ACCEPT=XML)
    assert as_json.status_code == as_xml.status_code == 200
    expected = [_normalized(d) for d in _digits(as_json.getvalue())]
    assert _xml_datasets(as_xml) == expected


def test_the_files_compared_hold_every_form_of_value(cast):
    """The comparison above is not vacuous: between them, these stored files hold names in
    components, items, bulk data, inline binary, private creators, AT values, an empty
    value among others, an empty element and a CR."""
    forms = {
        b"<PersonName",
        b"<MiddleName>",
        b"<Item",
        b"<BulkData uri=",
        b"<InlineBinary>",
        b"privateCreator=",
        b'vr="AT"',
        b'<Value number="2"/>',
        b'"/><DicomAttribute',
        b"&#13;",
    }
    found = set()
    for name in ("CT_small.dcm", "examples_ybr_color.dcm", "rtplan.dcm"):
        result = ingest(pydicom_file(name))
        assert result.status == "stored"
        path = _paths(result)["instance"]
        ((_, body),) = multipart_parts(client_for("bob", "CHEM").get(path, HTTP_ACCEPT=XML))
        found |= {form for form in forms if form in body}
    assert found == forms


# --- QIDO-RS ---------------------------------------------------------------------------------


def _search_paths(result) -> list[str]:
    study = f"/dicomweb/studies/{result.study_uid}"
    return [
        "/dicomweb/studies?PatientID=CHEM-X1",
        f"{study}/series",
        f"{study}/instances",
        f"{study}/series/{result.series_uid}/instances?includefield=all",
    ]


@pytest.mark.parametrize("index", range(4))
def test_search_results_come_as_xml_one_part_each(alice, xavier_studies, index):
    as_xml, expected = _as_xml_and_as_json(alice, _search_paths(xavier_studies["shown"])[index])
    assert expected
    assert as_xml == expected


def test_a_search_matching_nothing_is_an_empty_xml_body(alice, xavier_studies):
    response = alice.get("/dicomweb/studies", {"PatientID": "NOBODY"}, HTTP_ACCEPT=XML)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(XML)
    assert response.content == b""


def test_an_xml_search_keeps_its_warnings(cast, tmp_path):
    share_with_alice(cast)
    for day in (1, 2):
        ingest(dicom_copy(tmp_path, patient_id="CHEM-X1", StudyDate=f"2024010{day}"))
    response = client_for("alice", "CHL").get("/dicomweb/studies", {"limit": 1}, HTTP_ACCEPT=XML)
    assert len(_xml_datasets(response)) == 1
    assert "Additional results can be requested." in response["Warning"]


def test_a_hidden_study_is_not_searched_in_xml_either(alice, xavier_studies):
    hidden = xavier_studies["hidden"]
    response = alice.get(f"/dicomweb/studies/{hidden.study_uid}/series", HTTP_ACCEPT=XML)
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "NOT_FOUND", "message": "No such study."}}
    found = b"".join(alice.get("/dicomweb/studies", HTTP_ACCEPT=XML).streaming_content)
    assert xavier_studies["shown"].study_uid.encode() in found
    assert hidden.study_uid.encode() not in found
