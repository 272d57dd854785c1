"""CertificateUserMappings as SAP's Security Content API: Id is the MD5 of the DER."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from partnergate.security import pki

from ..conftest import Api


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> pki.CA:
    return pki.init_ca(tmp_path_factory.mktemp("ca"))


def client_cert(ca: pki.CA, tmp: Path, name: str, **kw):  # type: ignore[no-untyped-def]
    return pki.issue_client(ca, tmp, name, password="pw", **kw).certificate


def seed_body(cert, user: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The blog's body: a dummy Id and base64 of the PEM text with CRLF line ends."""
    pem = cert.public_bytes(serialization.Encoding.PEM).replace(b"\n", b"\r\n")
    return {"Id": "12", "User": user, "Certificate": base64.b64encode(pem).decode()}


def test_seed_body_creates_mapping(api: Api, ca: pki.CA, tmp_path: Path) -> None:
    cert = client_cert(ca, tmp_path, "sender_cert")
    der = cert.public_bytes(serialization.Encoding.DER)
    r = api.post("CertificateUserMappings", json=seed_body(cert, "user_for_sender_cert"))
    assert r.status_code == 201, r.text
    d = r.json()["d"]
    assert d["Id"] == hashlib.md5(der).hexdigest()
    assert d["User"] == "user_for_sender_cert"
    assert d["__metadata"]["type"] == "com.sap.hci.api.CertificateUserMapping"
    assert d["ValidUntil"] == str(int(cert.not_valid_after_utc.timestamp() * 1000))
    assert base64.b64decode(d["Certificate"]).startswith(b"-----BEGIN CERTIFICATE-----")
    got = api.get(f"CertificateUserMappings('{d['Id']}')").json()["d"]
    assert got["User"] == "user_for_sender_cert"
    assert api.put(f"CertificateUserMappings('{d['Id']}')", json={"User": "x"}).status_code == 405
    assert api.delete(f"CertificateUserMappings('{d['Id']}')").status_code == 204
    assert api.get(f"CertificateUserMappings('{d['Id']}')").status_code == 404


def test_same_certificate_again_repoints_it(api: Api, ca: pki.CA, tmp_path: Path) -> None:
    cert = client_cert(ca, tmp_path, "again")
    first = api.post("CertificateUserMappings", json=seed_body(cert, "first_user")).json()["d"]
    pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    again = api.post("CertificateUserMappings", json={"User": "second_user", "Certificate": pem})
    assert again.status_code == 201
    assert again.json()["d"]["Id"] == first["Id"]
    got = api.get(f"CertificateUserMappings('{first['Id']}')").json()["d"]
    assert got["User"] == "second_user" and got["CreatedTime"] == first["CreatedTime"]


def test_der_forms_several_per_user_and_filter(api: Api, ca: pki.CA, tmp_path: Path) -> None:
    user = "rotating_" + uuid.uuid4().hex[:6]
    old = client_cert(ca, tmp_path, "old")
    new = client_cert(ca, tmp_path, "new")
    der_b64 = base64.b64encode(old.public_bytes(serialization.Encoding.DER)).decode()
    assert (
        api.post("CertificateUserMappings", json={"User": user, "Certificate": der_b64}).status_code
        == 201
    )
    assert api.post("CertificateUserMappings", json=seed_body(new, user)).status_code == 201
    listed = api.get(
        "CertificateUserMappings",
        params={"$filter": f"User eq '{user}'", "$select": "Id,User,ValidUntil", "$orderby": "Id"},
    ).json()["d"]["results"]
    assert len(listed) == 2
    assert set(listed[0]) == {"__metadata", "Id", "User", "ValidUntil"}


def test_expired_certificate_may_be_stored(api: Api, ca: pki.CA, tmp_path: Path) -> None:
    past = datetime.now(UTC) - timedelta(days=30)
    cert = client_cert(ca, tmp_path, "expired", not_before=past, days=1)
    assert api.post("CertificateUserMappings", json=seed_body(cert, "late_user")).status_code == 201


def test_not_a_certificate_is_400(api: Api) -> None:
    for value in (
        "hello",
        base64.b64encode(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----").decode(),
        "",
    ):
        r = api.post("CertificateUserMappings", json={"User": "u", "Certificate": value})
        assert r.status_code == 400, value
        assert "certificate" in r.json()["error"]["message"]["value"].lower()
    r = api.post("CertificateUserMappings", json={"User": "", "Certificate": "x"})
    assert r.status_code == 400
