"""BinaryParameters, AlternativePartners, AuthorizedUsers, UserCredentialParameters, Partners."""

from __future__ import annotations

import base64
import hashlib
import uuid

from ..conftest import Api, Server

XSL = b'<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform"/>'


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- BinaryParameters ---------------------------------------------------------------------


def test_binary_round_trip_and_update(api: Api, pid: str) -> None:
    r = api.post(
        "BinaryParameters", json={"Pid": pid, "Id": "MAP", "ContentType": "xsl", "Value": b64(XSL)}
    )
    assert r.status_code == 201, r.text
    d = r.json()["d"]
    assert d["ContentType"] == "xsl" and base64.b64decode(d["Value"]) == XSL
    assert d["__metadata"]["type"] == "com.sap.hci.api.BinaryParameter"
    put = api.put(
        f"BinaryParameters(Pid='{pid}',Id='MAP')",
        json={"ContentType": "xml;encoding=UTF-8", "Value": b64(b"<a/>")},
    )
    assert put.status_code == 204, put.text
    got = api.get(f"BinaryParameters(Pid='{pid}',Id='MAP')").json()["d"]
    assert got["ContentType"] == "xml;encoding=UTF-8" and base64.b64decode(got["Value"]) == b"<a/>"


def test_binary_content_types(api: Api, pid: str) -> None:
    for i, ctype in enumerate(
        ["xml", "xsd", "json", "text", "zip", "gz", "zlib", "text;encoding=ISO-8859-1"]
    ):
        r = api.post(
            "BinaryParameters",
            json={"Pid": pid, "Id": f"C{i}", "ContentType": ctype, "Value": b64(b"x")},
        )
        assert r.status_code == 201, (ctype, r.text)
    for ctype in ["pdf", "zip;encoding=UTF-8", "xml;charset=UTF-8", "xml;encoding=KLINGON", ""]:
        r = api.post(
            "BinaryParameters",
            json={"Pid": pid, "Id": "BAD", "ContentType": ctype, "Value": b64(b"x")},
        )
        assert r.status_code == 400, ctype
        assert "ContentType" in r.json()["error"]["message"]["value"]


def test_crt_must_be_a_certificate(api: Api, pid: str) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "partner")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    ok = api.post(
        "BinaryParameters", json={"Pid": pid, "Id": "CERT", "ContentType": "crt", "Value": b64(der)}
    )
    assert ok.status_code == 201, ok.text
    bad = api.post(
        "BinaryParameters",
        json={"Pid": pid, "Id": "NOCERT", "ContentType": "crt", "Value": b64(b"hello")},
    )
    assert bad.status_code == 400 and "X.509" in bad.json()["error"]["message"]["value"]


def test_binary_size_limit_and_bad_base64(api: Api, pid: str) -> None:
    limit = 1_572_864
    ok = api.post(
        "BinaryParameters",
        json={"Pid": pid, "Id": "MAX", "ContentType": "zip", "Value": b64(b"\0" * limit)},
    )
    assert ok.status_code == 201, ok.text[:300]
    over = api.post(
        "BinaryParameters",
        json={"Pid": pid, "Id": "OVER", "ContentType": "zip", "Value": b64(b"\0" * (limit + 1))},
    )
    assert over.status_code == 400
    bad = api.post(
        "BinaryParameters",
        json={"Pid": pid, "Id": "B64", "ContentType": "zip", "Value": "not base64!!"},
    )
    assert bad.status_code == 400 and "Value" in bad.json()["error"]["message"]["value"]
    assert api.get(f"BinaryParameters(Pid='{pid}',Id='OVER')").status_code == 404


# -- AlternativePartners ------------------------------------------------------------------


def test_alternative_partner_hex_keys(api: Api, pid: str) -> None:
    agency = "Agency" + uuid.uuid4().hex[:6]
    r = api.post(
        "AlternativePartners",
        json={"Agency": agency, "Scheme": "LONG", "Id": "Receiver Premium", "Pid": pid},
    )
    assert r.status_code == 201, r.text
    d = r.json()["d"]
    hexagency = agency.encode().hex().upper()
    assert d["Hexagency"] == hexagency
    assert d["Hexscheme"] == "4C4F4E47"
    assert d["Hexid"] == b"Receiver Premium".hex().upper()
    assert r.headers["location"].endswith(
        f"AlternativePartners(Hexagency='{hexagency}',Hexscheme='4C4F4E47',Hexid='{d['Hexid']}')"
    )
    lower = api.get(
        f"AlternativePartners(Hexagency='{hexagency.lower()}',Hexscheme='4c4f4e47',Hexid='{d['Hexid'].lower()}')"
    )
    assert lower.status_code == 200 and lower.json()["d"]["Pid"] == pid
    bad = api.get("AlternativePartners(Hexagency='XYZ',Hexscheme='4C',Hexid='4C')")
    assert bad.status_code == 400


def test_alternative_partner_uniqueness_and_put(api: Api, pid: str) -> None:
    agency = "Ag" + uuid.uuid4().hex[:6]
    first = {"Agency": agency, "Scheme": "S", "Id": "one", "Pid": pid}
    assert api.post("AlternativePartners", json=first).status_code == 201
    assert api.post("AlternativePartners", json={**first, "Pid": pid + "x"}).status_code == 400
    same_pid = api.post("AlternativePartners", json={**first, "Id": "two"})
    assert same_pid.status_code == 400
    assert "(Agency, Scheme, Pid)" in same_pid.json()["error"]["message"]["value"]
    hexagency = agency.encode().hex().upper()
    key = f"AlternativePartners(Hexagency='{hexagency}',Hexscheme='53',Hexid='6F6E65')"
    assert api.put(key, json={"Pid": pid + "new"}).status_code == 204
    assert api.get(key).json()["d"]["Pid"] == pid + "new"
    assert api.put(key, json={"Agency": "changed"}).status_code == 400
    assert api.delete(key).status_code == 204


def test_alternative_partner_field_limits(api: Api, pid: str) -> None:
    cases = [
        {"Agency": "A" * 121, "Scheme": "S", "Id": "i"},
        {"Agency": "A", "Scheme": "S" * 121, "Id": "i"},
        {"Agency": "A", "Scheme": "S", "Id": "i" * 256},
    ]
    for case in cases:
        assert api.post("AlternativePartners", json={**case, "Pid": pid}).status_code == 400
    assert (
        api.post(
            "AlternativePartners",
            json={"Agency": "A" * 120, "Scheme": "S", "Id": "i" * 255, "Pid": pid},
        ).status_code
        == 201
    )


# -- AuthorizedUsers ----------------------------------------------------------------------


def test_authorized_users_are_lower_case_and_unique(api: Api, pid: str) -> None:
    user = "MyUser_" + uuid.uuid4().hex[:6]
    r = api.post("AuthorizedUsers", json={"User": user, "Pid": pid})
    assert r.status_code == 201, r.text
    assert r.json()["d"]["User"] == user.lower()
    assert api.get(f"AuthorizedUsers('{user.lower()}')").json()["d"]["Pid"] == pid
    assert api.get(f"AuthorizedUsers('{user}')").status_code == 200
    again = api.post("AuthorizedUsers", json={"User": user.upper(), "Pid": pid + "2"})
    assert again.status_code == 400
    assert api.put(f"AuthorizedUsers('{user.lower()}')", json={"Pid": pid + "2"}).status_code == 204
    assert api.get(f"AuthorizedUsers(User='{user.lower()}')").json()["d"]["Pid"] == pid + "2"
    assert api.put(f"AuthorizedUsers('{user.lower()}')", json={"User": "other"}).status_code == 400
    assert api.post("AuthorizedUsers", json={"User": "u" * 151, "Pid": pid}).status_code == 400


# -- UserCredentialParameters -------------------------------------------------------------


def test_user_credentials_upsert_and_password_never_returned(
    server: Server, api: Api, pid: str
) -> None:
    body = {"Pid": pid, "Id": "USER", "User": "user_receiver_1", "Password": "first-pass"}
    r = api.post("UserCredentialParameters", json=body)
    assert r.status_code == 201, r.text
    assert r.json()["d"]["Password"] is None
    again = api.post(
        "UserCredentialParameters", json={**body, "User": "user2", "Password": "second-pass"}
    )
    assert again.status_code == 201
    d = api.get(f"UserCredentialParameters(Pid='{pid}',Id='USER')").json()["d"]
    assert d["User"] == "user2" and d["Password"] is None
    assert d["CreatedTime"] == d["LastModifiedTime"] and d["CreatedBy"] == d["LastModifiedBy"]
    hashed = api.get(
        f"UserCredentialParameters(Pid='{pid}',Id='USER')",
        params={"returnHashedPassword": "SHA256"},
    )
    assert hashed.json()["d"]["Password"] == "SHA256." + hashlib.sha256(b"second-pass").hexdigest()
    listed = api.get("UserCredentialParameters", params={"$filter": f"Pid eq '{pid}'"})
    assert [e["Id"] for e in listed.json()["d"]["results"]] == ["USER"]
    assert all(e["Password"] is None for e in listed.json()["d"]["results"])
    assert "second-pass" not in server.log() and "first-pass" not in server.log()


def test_user_credentials_rules(api: Api, pid: str) -> None:
    no_filter = api.get("UserCredentialParameters")
    assert (
        no_filter.status_code == 400 and "Pid eq" in no_filter.json()["error"]["message"]["value"]
    )
    assert api.get("UserCredentialParameters", params={"$filter": "User eq 'x'"}).status_code == 400
    no_password = api.post("UserCredentialParameters", json={"Pid": pid, "Id": "U", "User": "u"})
    assert (
        no_password.status_code == 400
        and "Password" in no_password.json()["error"]["message"]["value"]
    )
    api.post("UserCredentialParameters", json={"Pid": pid, "Id": "U", "User": "u", "Password": "p"})
    assert (
        api.put(f"UserCredentialParameters(Pid='{pid}',Id='U')", json={"User": "v"}).status_code
        == 405
    )
    too_long = api.post(
        "UserCredentialParameters",
        json={"Pid": pid, "Id": "U2", "User": "u", "Password": "p" * 201},
    )
    assert too_long.status_code == 400


def test_user_credential_password_is_encrypted_at_rest(server: Server, api: Api, pid: str) -> None:
    marker = "plain-" + uuid.uuid4().hex
    api.post(
        "UserCredentialParameters", json={"Pid": pid, "Id": "ENC", "User": "u", "Password": marker}
    )
    db = server.env["PARTNERGATE_DB"]
    if db.startswith("sqlite:///"):
        data = open(db[len("sqlite:///") :], "rb").read()
        wal = db[len("sqlite:///") :] + "-wal"
        import os

        if os.path.exists(wal):
            data += open(wal, "rb").read()
        assert marker.encode() not in data


# -- Partners -----------------------------------------------------------------------------


def test_partners_are_implicit_and_delete_cascades_with_exclude(api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "S", "Value": "v"})
    api.post(
        "BinaryParameters", json={"Pid": pid, "Id": "B", "ContentType": "text", "Value": b64(b"x")}
    )
    user = "u_" + uuid.uuid4().hex[:8]
    api.post("AuthorizedUsers", json={"User": user, "Pid": pid})
    listed = api.get("Partners", params={"$filter": f"Pid eq '{pid}'"}).json()["d"]["results"]
    assert listed == [{"__metadata": listed[0]["__metadata"], "Pid": pid}]
    assert api.get(f"Partners('{pid}')").status_code == 200
    assert api.post("Partners", json={"Pid": "X"}).status_code == 405
    r = api.delete(f"Partners('{pid}')", params={"exclude": "AuthorizedUsers"})
    assert r.status_code == 204, r.text
    assert api.get(f"StringParameters(Pid='{pid}',Id='S')").status_code == 404
    assert api.get(f"BinaryParameters(Pid='{pid}',Id='B')").status_code == 404
    assert api.get(f"AuthorizedUsers('{user}')").status_code == 200
    assert api.get(f"Partners('{pid}')").status_code == 200
    assert api.delete(f"Partners('{pid}')").status_code == 204
    assert api.get(f"Partners('{pid}')").status_code == 404
    assert api.delete(f"Partners('{pid}')").status_code == 404
    assert api.delete("Partners('x')", params={"exclude": "Nonsense"}).status_code == 400
