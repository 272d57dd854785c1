"""Both stores, one rule: field rules are checked in ``model/`` before a store sees a value.

Finding 11 of issue 10: a ``Value`` holding U+0000 was 201 on SQLite and 500 on
PostgreSQL; an authorised user of 150 × ``İ`` lower-cases to 300 characters, stored beyond
MaxLength 150 on SQLite and a 500 on PostgreSQL. Each test runs on the store the session
uses (``PARTNERGATE_TEST_STORE``), and the suite runs on both.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest
from cryptography.hazmat.primitives import serialization

from partnergate.security import pki

from ..conftest import Api, Server
from .directory_state import assert_odata_error, part_statuses, send_batch, send_json, state


@pytest.fixture(scope="module")
def certificate_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("pki")
    ca = pki.init_ca(tmp)
    cert = pki.issue_client(ca, tmp, "field_rules", password="pw").certificate
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def valid_bodies(pid: str, pem: str) -> dict[str, dict[str, str]]:
    """A body each entity set accepts; every string property of each is set."""
    return {
        "StringParameters": {"Pid": pid, "Id": "sp", "Value": "v"},
        "BinaryParameters": {
            "Pid": pid,
            "Id": "bp",
            "ContentType": "text",
            "Value": base64.b64encode(b"x").decode(),
        },
        "UserCredentialParameters": {"Pid": pid, "Id": "uc", "User": "u", "Password": "p"},
        "AlternativePartners": {"Agency": "A", "Scheme": "S", "Id": "I", "Pid": pid},
        "AuthorizedUsers": {"User": "user_" + pid.lower(), "Pid": pid},
        "CertificateMappingRules": {
            "Id": "rule_" + pid,
            "Kind": "SubjectIssuer",
            "User": "u",
            "SubjectDN": "CN=s",
            "IssuerDN": "CN=i",
            "SerialNumber": "0a",
        },
        "CertificateUserMappings": {"User": "u_" + pid, "Certificate": pem},
    }


STRING_FIELDS = [
    ("StringParameters", "Pid"),
    ("StringParameters", "Id"),
    ("StringParameters", "Value"),
    ("BinaryParameters", "Pid"),
    ("BinaryParameters", "Id"),
    ("BinaryParameters", "ContentType"),
    ("UserCredentialParameters", "Pid"),
    ("UserCredentialParameters", "Id"),
    ("UserCredentialParameters", "User"),
    ("UserCredentialParameters", "Password"),
    ("AlternativePartners", "Agency"),
    ("AlternativePartners", "Scheme"),
    ("AlternativePartners", "Id"),
    ("AlternativePartners", "Pid"),
    ("AuthorizedUsers", "User"),
    ("AuthorizedUsers", "Pid"),
    ("CertificateMappingRules", "Id"),
    ("CertificateMappingRules", "Kind"),
    ("CertificateMappingRules", "User"),
    ("CertificateMappingRules", "SubjectDN"),
    ("CertificateMappingRules", "IssuerDN"),
    ("CertificateMappingRules", "SerialNumber"),
    ("CertificateUserMappings", "User"),
    ("CertificateUserMappings", "Certificate"),
]


@pytest.mark.parametrize(("entity_set", "field"), STRING_FIELDS)
@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1b", "\ufffe"])
def test_nul_and_control_characters_in_every_string_field_are_400(
    api: Api, pid: str, certificate_pem: str, entity_set: str, field: str, char: str
) -> None:
    body = valid_bodies(pid, certificate_pem)[entity_set]
    body[field] = body[field][:1] + char + body[field][1:]
    before = state(api, pid)
    r = send_json(api, "POST", entity_set, body)
    assert_odata_error(r, 400)
    assert state(api, pid) == before


@pytest.mark.parametrize(("entity_set", "field"), STRING_FIELDS)
def test_nul_in_a_batch_writes_nothing(
    api: Api, pid: str, certificate_pem: str, entity_set: str, field: str
) -> None:
    body = valid_bodies(pid, certificate_pem)[entity_set]
    body[field] = "\x00" + body[field]
    before = state(api, pid)
    first = ("POST", "StringParameters", {"Pid": pid, "Id": "first", "Value": "v"})
    r = send_batch(api, [[first, ("POST", entity_set, body)]])
    assert part_statuses(r) == [400], r.text
    assert state(api, pid) == before


def test_every_valid_body_is_accepted(api: Api, pid: str, certificate_pem: str) -> None:
    """The bodies above are valid: the refusals are the character's doing."""
    for entity_set, body in valid_bodies(pid, certificate_pem).items():
        r = send_json(api, "POST", entity_set, body)
        assert r.status_code == 201, (entity_set, r.text)
        assert api.delete(r.headers["location"]).status_code == 204


@pytest.mark.parametrize("value", ["line 1\nline 2", "a\tb", "crlf\r\nend", "ünï€😀", "\x7f\x85"])
def test_multi_line_values_keep_tab_and_line_breaks_in_json_and_atom(
    api: Api, pid: str, value: str
) -> None:
    r = send_json(api, "POST", "StringParameters", {"Pid": pid, "Id": "ml", "Value": value})
    assert r.status_code == 201, r.text
    url = f"StringParameters(Pid='{pid}',Id='ml')"
    assert api.get(url).json()["d"]["Value"] == value
    atom = api.get(url, headers={"Accept": "application/atom+xml"})
    assert atom.status_code == 200
    ns = {"d": "http://schemas.microsoft.com/ado/2007/08/dataservices"}
    text = ET.fromstring(atom.content).find(".//d:Value", ns)
    assert text is not None
    # XML normalises a literal CR; a CR that survives is written as a character reference
    assert (text.text or "") == value


def test_put_with_nul_keeps_the_old_value(api: Api, pid: str) -> None:
    send_json(api, "POST", "StringParameters", {"Pid": pid, "Id": "p", "Value": "old"})
    before = state(api, pid)
    url = f"StringParameters(Pid='{pid}',Id='p')"
    assert_odata_error(send_json(api, "PUT", url, {"Value": "new\x00"}), 400)
    assert_odata_error(send_json(api, "MERGE", url, {"Value": "\x02"}), 400)
    assert state(api, pid) == before


def test_user_option_with_a_control_character_is_400(api: Api, pid: str) -> None:
    before = state(api, pid)
    for user in ("a\x00b", "a\nb", "a\u2028b"):
        body = {"Pid": pid, "Id": "u", "Value": "v"}
        r = send_json(api, "POST", "StringParameters", body, params={"user": user})
        assert_odata_error(r, 400)
    assert state(api, pid) == before
    r = send_json(
        api,
        "POST",
        "StringParameters",
        {"Pid": pid, "Id": "u", "Value": "v"},
        params={"user": "x" * 400},
    )
    assert r.status_code == 201
    assert r.json()["d"]["CreatedBy"] == "x" * 150


@pytest.mark.parametrize("literal", ["a%00b", "%01", "%EF%BF%BE"])
def test_filter_literal_with_nul_is_400_on_every_store(api: Api, literal: str) -> None:
    r = api.get(f"StringParameters?$filter=Value eq '{literal}'")
    assert_odata_error(r, 400)
    r = api.get(f"AuthorizedUsers?$filter=startswith(User,'{literal}')")
    assert_odata_error(r, 400)


def test_user_length_is_counted_after_lower_casing(api: Api, pid: str) -> None:
    before = state(api, pid)
    dotted = "İ" * 150  # lower-cases to "i̇" × 150: 300 characters
    assert len(dotted.lower()) == 300
    r = send_json(api, "POST", "AuthorizedUsers", {"User": dotted, "Pid": pid})
    assert "150" in assert_odata_error(r, 400)
    assert state(api, pid) == before
    assert_odata_error(api.get(f"AuthorizedUsers('{dotted}')"), 400)
    assert_odata_error(send_json(api, "PUT", f"AuthorizedUsers('{dotted}')", {"Pid": pid}), 400)
    assert_odata_error(api.delete(f"AuthorizedUsers('{dotted}')"), 400)
    fits = "İ" * 75
    r = send_json(api, "POST", "AuthorizedUsers", {"User": fits, "Pid": pid})
    assert r.status_code == 201, r.text
    assert r.json()["d"]["User"] == fits.lower() and len(fits.lower()) == 150
    assert api.get(r.headers["location"]).status_code == 200
    assert api.get(f"AuthorizedUsers('{fits}')").json()["d"]["Pid"] == pid
    assert api.delete(f"AuthorizedUsers('{fits}')").status_code == 204


@pytest.mark.parametrize(
    ("entity_set", "field", "limit"),
    [
        ("StringParameters", "Value", 4000),
        ("StringParameters", "Id", 1500),
        ("StringParameters", "Pid", 60),
        ("AuthorizedUsers", "User", 150),
        ("AlternativePartners", "Id", 255),
        ("UserCredentialParameters", "Password", 200),
    ],
)
def test_values_one_beyond_their_length_are_400(
    api: Api, pid: str, certificate_pem: str, entity_set: str, field: str, limit: int
) -> None:
    body = valid_bodies(pid, certificate_pem)[entity_set]
    body[field] = "x" * (limit + 1)
    before = state(api, pid)
    assert_odata_error(send_json(api, "POST", entity_set, body), 400)
    assert state(api, pid) == before


def test_very_long_key_in_the_url_is_400(api: Api) -> None:
    assert_odata_error(api.get("AuthorizedUsers('" + "x" * 5000 + "')"), 400)
    assert_odata_error(api.delete("Partners('" + "p" * 61 + "')"), 400)


def test_runtime_lookups_with_nul_find_nothing_on_every_store(
    server: object, store_url: str, api: Api, pid: str
) -> None:
    """A flow looks up what a sender's message names; NUL there must not reach the store."""
    import asyncio
    import os

    from partnergate.security.secretbox import SecretBox
    from partnergate.store import database
    from partnergate.store.directory import DirectoryStore
    from partnergate.store.reader import StoreReader

    send_json(api, "POST", "StringParameters", {"Pid": pid, "Id": "a", "Value": "v"})
    send_json(api, "POST", "AuthorizedUsers", {"User": "nul_" + pid.lower(), "Pid": pid})

    async def lookups() -> list[object]:
        engine = database.create_engine(store_url)
        reader = StoreReader(DirectoryStore(engine, SecretBox(os.urandom(32))))
        try:
            return [
                await reader.get_string_parameter(pid, "a"),
                await reader.get_string_parameter(pid + "\x00", "a"),
                await reader.get_binary_parameter(pid, "a\x00"),
                await reader.get_user_credential("\x00", "a"),
                await reader.get_partner_id("A\x00", "S", "I"),
                await reader.get_alternative_partner_id("A", "S\x00", pid),
                await reader.get_partner_id_of_authorized_user("nul_" + pid.lower() + "\x00"),
                await reader.get_authorized_users(pid + "\x00"),
                await reader.get_partner_id_of_authorized_user("nul_" + pid.lower()),
            ]
        finally:
            await engine.dispose()

    found = asyncio.run(lookups())
    assert found == ["v", None, None, None, None, None, None, [], pid]


# -- the rules themselves, without a store --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "one_line", "multi_line"),
    [
        ("plain", True, True),
        ("tab\there", False, True),
        ("line\nbreak", False, True),
        ("cr\r", False, True),
        ("ls\u2028", False, True),
        ("nel\x85", False, True),
        ("nul\x00", False, False),
        ("esc\x1b", False, False),
        ("nonchar\uffff", False, False),
        ("lone\ud800", False, False),
        ("emoji😀€", True, True),
    ],
)
def test_text_rules(text: str, one_line: bool, multi_line: bool) -> None:
    from partnergate.model.errors import InvalidValue
    from partnergate.model.rules import check_text, storable

    for multiline, allowed in ((False, one_line), (True, multi_line)):
        if allowed:
            check_text("f", text, multiline=multiline)
        else:
            with pytest.raises(InvalidValue, match="U\\+"):
                check_text("f", text, multiline=multiline)
    assert storable(text) is multi_line


def test_keys_are_folded_then_checked() -> None:
    from partnergate.model.entities import ALTERNATIVE_PARTNER, AUTHORIZED_USER
    from partnergate.model.errors import InvalidKey, InvalidValue, NotFound
    from partnergate.model.rules import prepare_create, prepare_key

    assert prepare_key(AUTHORIZED_USER, {"User": "MiXed"}) == {"User": "mixed"}
    assert prepare_key(AUTHORIZED_USER, {"User": "İ" * 75}) == {"User": "i̇" * 75}
    # a key no entity can have: 400 on the API, "not found" to a page that looks it up
    assert issubclass(InvalidKey, NotFound) and InvalidKey.status == 400
    with pytest.raises(InvalidKey, match="150"):
        prepare_key(AUTHORIZED_USER, {"User": "İ" * 76})
    with pytest.raises(InvalidValue, match="150"):
        prepare_create(AUTHORIZED_USER, {"User": "İ" * 76, "Pid": "P"})
    key = {"Hexagency": "41", "Hexscheme": "53", "Hexid": "6a"}
    assert prepare_key(ALTERNATIVE_PARTNER, key)["Hexid"] == "6A"


@pytest.mark.parametrize(
    "url",
    [
        "MessageProcessingLogAttachments('a%00b')/$value",
        "MessageProcessingLogAttachments('a%00b')",
        "MessageProcessingLogs('a%00b')",
        "MessageProcessingLogs('a%00b')/Attachments",
        "MessageProcessingLogs('a%00b')/ErrorInformation/$value",
        "CertificateUserMappings('%00')",
        "CertificateMappingRules('%01')",
        "Partners('%00')",
        "StringParameters(Pid='%00',Id='x')",
        "AlternativePartners(Hexagency='00',Hexscheme='41',Hexid='41')",
    ],
)
def test_reads_by_a_key_no_store_can_hold_are_400_on_every_store(api: Api, url: str) -> None:
    assert_odata_error(api.get(url), 400)


@pytest.mark.parametrize(
    "path",
    [
        "/ui/rules/" + "r" * 61,
        "/ui/rules/a%00b",
        "/ui/certificates/" + "c" * 33,
        "/ui/certificates/%01",
        "/ui/monitor/a%00b",
    ],
)
def test_pages_for_a_key_no_entity_can_have_are_not_found(server: Server, path: str) -> None:
    from ..ui.conftest import sign_in

    with sign_in(server, *server.admin) as ui:
        assert ui.get(path).status_code == 404
