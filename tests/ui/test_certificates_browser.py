"""Mapping a client certificate made by the test to Sender_CERT's user, in Chromium."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.sync_api import Page, expect

from ..conftest import Api
from .conftest import csrf_of, shot

USER = "user_for_sender_cert"


def make_certificate(common_name: str, days: int) -> x509.Certificate:
    """A self-signed client certificate valid from a year ago until ``days`` from now."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sender AG"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = datetime.now(UTC).replace(microsecond=0)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=365))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )


def ensure_sender_cert(api: Api) -> None:
    r = api.post("AuthorizedUsers", json={"User": USER, "Pid": "Sender_CERT"})
    if r.status_code != 201:
        assert api.get(f"AuthorizedUsers('{USER}')").json()["d"]["Pid"] == "Sender_CERT"


def test_map_a_certificate_to_sender_cert_and_delete_it(
    page: Page, api: Api, tmp_path: Path
) -> None:
    ensure_sender_cert(api)
    cert = make_certificate("Sender_CERT", days=365)
    der = tmp_path / "sender_cert.der"
    der.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    until = cert.not_valid_after_utc.strftime("%Y-%m-%d %H:%M")

    page.get_by_role("link", name="Certificates", exact=True).click()
    page.get_by_role("link", name="Map a certificate").click()
    page.get_by_label("User", exact=True).fill(USER)
    page.get_by_label("Upload a file").set_input_files(str(der))
    shot(page, "new-certificate")
    page.get_by_role("button", name="Map certificate").click()

    expect(page.get_by_role("status")).to_contain_text(f"Certificate mapped to user '{USER}'")
    row = page.get_by_role("row").filter(has_text="CN=Sender_CERT,O=Sender AG,C=DE")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(USER)
    expect(row).to_contain_text(until)
    expect(row.get_by_role("link", name="Sender_CERT", exact=True)).to_be_visible()
    shot(page, "certificates")

    row.get_by_role("link", name="Sender_CERT", exact=True).click()
    expect(page).to_have_url(re.compile(r"/ui/partners/Sender_CERT$"))
    users = page.locator("section[aria-labelledby=authorized-users]")
    expect(users.get_by_role("cell", name=USER, exact=True)).to_be_visible()
    certificates = page.locator("section[aria-labelledby=certificates]")
    expect(certificates).to_contain_text("CN=Sender_CERT,O=Sender AG,C=DE")
    expect(certificates).to_contain_text(until)
    shot(page, "partner-with-certificate")

    mine = certificates.get_by_role("row").filter(has_text="CN=Sender_CERT,O=Sender AG,C=DE")
    mine.get_by_role("link", name=f"View certificate of {USER}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(USER)
    serial = cert.serial_number.to_bytes((cert.serial_number.bit_length() + 7) // 8, "big")
    expect(page.locator(".facts.certificate")).to_contain_text(serial.hex())
    shot(page, "certificate")
    mapping_id = page.url.rstrip("/").rsplit("/", 1)[1]
    assert api.get(f"CertificateUserMappings('{mapping_id}')").json()["d"]["User"] == USER

    page.get_by_role("link", name="Delete mapping…").click()
    shot(page, "delete-certificate")
    page.get_by_role("button", name="Delete mapping").click()
    expect(page.get_by_role("status")).to_contain_text("deleted")
    expect(
        page.get_by_role("row").filter(has_text="CN=Sender_CERT,O=Sender AG,C=DE")
    ).to_have_count(0)
    assert api.get(f"CertificateUserMappings('{mapping_id}')").status_code == 404
    assert api.get(f"AuthorizedUsers('{USER}')").status_code == 200


def test_expired_and_expiring_certificates_are_marked(page: Page, api: Api, pid: str) -> None:
    user = f"marked_{pid.lower()}"
    for cn, days in ((f"{pid}-old", -2), (f"{pid}-soon", 10), (f"{pid}-fine", 200)):
        pem = make_certificate(cn, days).public_bytes(serialization.Encoding.PEM)
        body = {"User": user, "Certificate": base64.b64encode(pem).decode()}
        assert api.post("CertificateUserMappings", json=body).status_code == 201
    page.goto(f"/ui/certificates?q={user}&sort=valid")
    rows = page.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("expired")
    expect(rows.nth(1)).to_contain_text(re.compile(r"expires in (9|10) days"))
    expect(rows.nth(2)).not_to_contain_text("expire")
    expect(rows.nth(0)).to_contain_text("none")


def test_a_bad_certificate_is_refused_next_to_its_field(ui: httpx.Client) -> None:
    token = csrf_of(ui.get("/ui/new-certificate").text)
    r = ui.post(
        "/ui/new-certificate",
        data={"csrf": token, "User": "someone", "Text": "-----BEGIN CERTIFICATE-----\nAAAA"},
    )
    assert r.status_code == 400
    assert 'id="error-Certificate"' in r.text
    assert "not an X.509 certificate" in r.text
    r = ui.post("/ui/new-certificate", data={"csrf": token, "User": "someone", "Text": ""})
    assert r.status_code == 400
    assert "Choose a certificate file or paste it as PEM" in r.text
