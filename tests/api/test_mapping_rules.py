"""CertificateMappingRules (partnergate's own): map by what survives a certificate renewal."""

from __future__ import annotations

import uuid

from ..conftest import Api

THUMB = "ab" * 32


def rule_id() -> str:
    return "R_" + uuid.uuid4().hex[:8]


def test_rule_kinds_and_canonical_dns(api: Api) -> None:
    rid = rule_id()
    body = {
        "Id": rid,
        "Kind": "SubjectIssuer",
        "User": "u1",
        "SubjectDN": "cn=Sender, o=Acme",
        "IssuerDN": "CN=Dev CA",
    }
    r = api.post("CertificateMappingRules", json=body)
    assert r.status_code == 201, r.text
    d = r.json()["d"]
    assert d["SubjectDN"] == "CN=Sender,O=Acme" and d["IssuerDN"] == "CN=Dev CA"
    assert api.put(f"CertificateMappingRules('{rid}')", json={"User": "u2"}).status_code == 204
    assert api.get(f"CertificateMappingRules('{rid}')").json()["d"]["User"] == "u2"
    serial = api.post(
        "CertificateMappingRules",
        json={
            "Id": rule_id(),
            "Kind": "IssuerSerial",
            "User": "u",
            "IssuerDN": "CN=CA",
            "SerialNumber": "00:1A:2b",
        },
    )
    assert serial.status_code == 201 and serial.json()["d"]["SerialNumber"] == "1a2b"
    thumb = api.post(
        "CertificateMappingRules",
        json={"Id": rule_id(), "Kind": "Thumbprint", "User": "u", "Thumbprint": THUMB.upper()},
    )
    assert thumb.status_code == 201 and thumb.json()["d"]["Thumbprint"] == THUMB
    assert api.delete(f"CertificateMappingRules('{rid}')").status_code == 204


def test_bad_rules_are_400(api: Api) -> None:
    cases = [
        ({"Kind": "Nonsense", "User": "u"}, "Kind"),
        ({"Kind": "SubjectIssuer", "User": "u", "SubjectDN": "CN=x"}, "IssuerDN"),
        (
            {"Kind": "SubjectIssuer", "User": "u", "SubjectDN": "not a dn", "IssuerDN": "CN=x"},
            "SubjectDN",
        ),
        ({"Kind": "Thumbprint", "User": "u", "Thumbprint": "abc"}, "Thumbprint"),
        (
            {"Kind": "IssuerSerial", "User": "u", "IssuerDN": "CN=x", "SerialNumber": "xyz"},
            "SerialNumber",
        ),
        ({"Kind": "Thumbprint", "User": "", "Thumbprint": THUMB}, "User"),
    ]
    for body, field in cases:
        r = api.post("CertificateMappingRules", json={"Id": rule_id(), **body})
        assert r.status_code == 400, body
        assert field in r.json()["error"]["message"]["value"], (body, r.text)
    rid = rule_id()
    api.post(
        "CertificateMappingRules",
        json={"Id": rid, "Kind": "Thumbprint", "User": "u", "Thumbprint": THUMB},
    )
    r = api.put(f"CertificateMappingRules('{rid}')", json={"Kind": "SubjectIssuer"})
    assert r.status_code == 400 and "SubjectDN" in r.json()["error"]["message"]["value"]
