"""$metadata and the service document, and SAP's own OData V2 client against them."""

from __future__ import annotations

import base64
import uuid

import pyodata
import pytest
import requests
from lxml import etree

from ..conftest import Server

EDMX = "http://schemas.microsoft.com/ado/2007/06/edmx"
EDM = "http://schemas.microsoft.com/ado/2008/09/edm"


def test_metadata_document(server: Server) -> None:
    r = requests.get(server.api + "/$metadata", auth=server.admin)
    assert r.status_code == 200
    doc = etree.fromstring(r.content)
    assert doc.get("Version") == "1.0"
    schema = doc.find(f".//{{{EDM}}}Schema")
    assert schema is not None and schema.get("Namespace") == "com.sap.hci.api"
    types = {t.get("Name"): t for t in schema.findall(f"{{{EDM}}}EntityType")}
    assert {
        "StringParameter",
        "BinaryParameter",
        "UserCredentialParameter",
        "AlternativePartner",
        "AuthorizedUser",
        "Partner",
    } <= set(types)
    value = types["StringParameter"].find(f"{{{EDM}}}Property[@Name='Value']")
    assert value.get("MaxLength") == "4000" and value.get("Nullable") == "false"
    sets = {s.get("Name") for s in doc.iter(f"{{{EDM}}}EntitySet")}
    assert {
        "StringParameters",
        "BinaryParameters",
        "AlternativePartners",
        "AuthorizedUsers",
        "UserCredentialParameters",
        "Partners",
    } <= sets


def test_service_document_lists_entity_sets(server: Server) -> None:
    r = requests.get(server.api + "/", auth=server.admin, headers={"Accept": "application/json"})
    assert "StringParameters" in r.json()["d"]["EntitySets"]


@pytest.fixture
def service(server: Server) -> pyodata.Client:
    session = requests.Session()
    session.auth = server.admin
    token = session.get(server.api + "/", headers={"X-CSRF-Token": "Fetch"}).headers["x-csrf-token"]
    session.headers["X-CSRF-Token"] = token
    return pyodata.Client(server.api + "/", session)


def test_pyodata_crud_on_every_entity_type(service: pyodata.Client) -> None:
    pid = "PY_" + uuid.uuid4().hex[:8]
    es = service.entity_sets
    sp = es.StringParameters.create_entity().set(Pid=pid, Id="ADDRESS", Value="https://r").execute()
    assert sp.Value == "https://r"
    got = es.StringParameters.get_entity(Pid=pid, Id="ADDRESS").execute()
    assert got.Value == "https://r"
    es.StringParameters.update_entity(Pid=pid, Id="ADDRESS").set(Value="https://r2").execute()
    assert es.StringParameters.get_entity(Pid=pid, Id="ADDRESS").execute().Value == "https://r2"
    found = es.StringParameters.get_entities().filter(f"Pid eq '{pid}'").execute()
    assert [e.Id for e in found] == ["ADDRESS"]

    bp = (
        es.BinaryParameters.create_entity()
        .set(Pid=pid, Id="X", ContentType="xml", Value=base64.b64encode(b"<a/>").decode())
        .execute()
    )
    assert bp.ContentType == "xml"
    es.BinaryParameters.update_entity(Pid=pid, Id="X").set(
        ContentType="text", Value=base64.b64encode(b"t").decode()
    ).execute()

    ap = (
        es.AlternativePartners.create_entity()
        .set(Agency="AgPy" + pid, Scheme="S", Id="alt", Pid=pid)
        .execute()
    )
    assert ap.Hexscheme == "53"
    es.AlternativePartners.update_entity(
        Hexagency=ap.Hexagency, Hexscheme="53", Hexid=ap.Hexid
    ).set(Pid=pid).execute()

    user = "py_" + uuid.uuid4().hex[:8]
    au = es.AuthorizedUsers.create_entity().set(User=user, Pid=pid).execute()
    assert au.User == user

    ucp = (
        es.UserCredentialParameters.create_entity()
        .set(Pid=pid, Id="USER", User="u", Password="p")
        .execute()
    )
    assert not ucp.Password  # null on the wire; pyodata shows a null string as ''
    creds = es.UserCredentialParameters.get_entities().filter(f"Pid eq '{pid}'").execute()
    assert [c.User for c in creds] == ["u"]

    partners = es.Partners.get_entities().filter(f"Pid eq '{pid}'").execute()
    assert [p.Pid for p in partners] == [pid]

    es.UserCredentialParameters.delete_entity(Pid=pid, Id="USER").execute()
    es.AuthorizedUsers.delete_entity(User=user).execute()
    es.AlternativePartners.delete_entity(
        Hexagency=ap.Hexagency, Hexscheme="53", Hexid=ap.Hexid
    ).execute()
    es.BinaryParameters.delete_entity(Pid=pid, Id="X").execute()
    es.StringParameters.delete_entity(Pid=pid, Id="ADDRESS").execute()
    assert es.Partners.get_entities().filter(f"Pid eq '{pid}'").execute() == []


def test_pyodata_batch_change_set(service: pyodata.Client) -> None:
    pid = "PYB_" + uuid.uuid4().hex[:8]
    es = service.entity_sets
    batch = service.create_batch()
    changeset = service.create_changeset()
    changeset.add_request(es.StringParameters.create_entity().set(Pid=pid, Id="one", Value="1"))
    changeset.add_request(es.StringParameters.create_entity().set(Pid=pid, Id="two", Value="2"))
    batch.add_request(changeset)
    batch.execute()
    found = es.StringParameters.get_entities().filter(f"Pid eq '{pid}'").execute()
    assert sorted(e.Id for e in found) == ["one", "two"]


def test_sap_style_metadata_setting(
    tmp_path_factory: pytest.TempPathFactory, store_url: str
) -> None:
    from ..conftest import start_server, stop_server

    srv = start_server(
        tmp_path_factory.mktemp("sapmeta"), store_url, {"PARTNERGATE_METADATA_STYLE": "sap"}
    )
    try:
        doc = etree.fromstring(requests.get(srv.api + "/$metadata", auth=srv.admin).content)
        string_type = doc.find(f".//{{{EDM}}}EntityType[@Name='StringParameter']")
        assert string_type.get("BaseType") == "com.sap.hci.api.Parameter"
    finally:
        stop_server(srv)
