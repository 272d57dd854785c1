"""Certificate mapping rules at /ui/rules: made from a certificate, listed, changed, deleted."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.serialization import Encoding
from playwright.sync_api import Page, expect

from partnergate.security.certificates import CertificateInfo

from ..conftest import ADMIN_ROLE, Api, Server
from .conftest import csrf_of, shot, sign_in
from .test_certificates_browser import make_certificate


def rule_row(page: Page, rule_id: str):  # noqa: ANN201 - a Playwright Locator
    return page.locator("tbody tr").filter(has=page.get_by_role("link", name=rule_id, exact=True))


def test_a_rule_made_from_a_mapped_certificate_is_listed_changed_and_deleted(
    page: Page, api: Api, pid: str
) -> None:
    user = f"renewing_{pid.lower()}"
    cert = make_certificate(f"{pid}-sender", days=200)
    pem = cert.public_bytes(Encoding.PEM)
    body = {"User": user, "Certificate": base64.b64encode(pem).decode()}
    mapping = api.post("CertificateUserMappings", json=body).json()["d"]["Id"]
    api.post("AuthorizedUsers", json={"User": user, "Pid": pid}).raise_for_status()
    info = CertificateInfo.from_certificate(cert)
    subject = f"CN={pid}-sender,O=Sender AG,C=DE"

    page.goto(f"/ui/certificates/{mapping}")
    page.get_by_role("link", name="Map by rule instead").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Add a certificate mapping rule")
    expect(page.get_by_role("link", name="Subject + issuer")).to_have_attribute(
        "aria-current", "page"
    )
    expect(page.locator("#filled")).to_contain_text(f"mapped exactly to user {user}")
    expect(page.get_by_label("Subject DN")).to_have_value(subject)
    expect(page.get_by_label("Issuer DN")).to_have_value(subject)
    expect(page.get_by_label("User", exact=True)).to_have_value(user)
    expect(page.get_by_text(f"authorized user of partner '{pid}'")).to_be_visible()
    page.get_by_label("Rule ID").fill(pid)
    shot(page, "new-rule")
    page.get_by_role("button", name="Add rule").click()

    expect(page.get_by_role("status")).to_contain_text(
        f"Rule '{pid}' added: subject + issuer → user '{user}'"
    )
    row = rule_row(page, pid)
    expect(row).to_contain_text("Subject + issuer")
    expect(row).to_contain_text(subject)
    expect(row).to_contain_text(user)
    expect(row.get_by_role("link", name=pid, exact=True).last).to_have_attribute(
        "href", f"/ui/partners/{pid}"
    )
    page.goto(f"/ui/rules?sort=-changed&q={pid}")
    shot(page, "rules")
    stored = api.get(f"CertificateMappingRules('{pid}')").json()["d"]
    assert (stored["Kind"], stored["SubjectDN"], stored["Thumbprint"]) == (
        "SubjectIssuer",
        subject,
        None,
    )

    rule_row(page, pid).get_by_role("link", name=f"Edit rule {pid}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(pid)
    expect(page.locator(".facts")).to_contain_text(pid)
    page.get_by_role("link", name="Issuer + serial").click()
    page.get_by_text("Fill in from a certificate").click()
    page.get_by_label("or paste PEM").fill(pem.decode())
    page.get_by_role("button", name="Fill in the fields").click()
    expect(page.get_by_label("Serial number")).to_have_value(info.serial)
    shot(page, "rule")
    page.get_by_role("button", name="Save rule").click()
    expect(page.get_by_role("status")).to_contain_text(f"Rule '{pid}' saved.")
    expect(rule_row(page, pid)).to_contain_text("Issuer + serial")
    stored = api.get(f"CertificateMappingRules('{pid}')").json()["d"]
    assert stored["Kind"] == "IssuerSerial"
    assert stored["SerialNumber"] == format(cert.serial_number, "x")
    assert stored["SubjectDN"] is None

    rule_row(page, pid).get_by_role("link", name=f"Delete rule {pid}").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(pid)
    # the rule keeps the serial as it matches it: hex without leading zeros
    expect(page.locator(".danger-card")).to_contain_text(format(cert.serial_number, "x"))
    shot(page, "delete-rule")
    page.get_by_role("button", name="Delete rule").click()
    expect(page.get_by_role("status")).to_contain_text(f"Rule '{pid}' deleted")
    expect(rule_row(page, pid)).to_have_count(0)
    assert api.get(f"CertificateMappingRules('{pid}')").status_code == 404


def test_an_uploaded_certificate_fills_a_thumbprint_rule(
    page: Page, api: Api, pid: str, tmp_path: Path
) -> None:
    cert = make_certificate(f"{pid}-upload", days=30)
    der = tmp_path / "upload.der"
    der.write_bytes(cert.public_bytes(Encoding.DER))
    user = f"thumb_{pid.lower()}"

    page.get_by_role("link", name="Mapping rules").click()
    page.get_by_role("link", name="Add a rule").click()
    page.get_by_role("link", name="Thumbprint").click()
    page.get_by_label("Upload a file").set_input_files(str(der))
    page.get_by_role("button", name="Fill in the fields").click()
    expect(page.locator("#filled")).to_contain_text(f"CN={pid}-upload")
    thumbprint = CertificateInfo.from_certificate(cert).sha256
    expect(page.get_by_label("SHA-256 thumbprint")).to_have_value(thumbprint)
    shot(page, "new-rule-from-upload")
    page.get_by_label("Rule ID").fill(pid)
    page.get_by_label("User", exact=True).fill(user)
    page.get_by_role("button", name="Add rule").click()

    row = rule_row(page, pid)
    expect(row).to_contain_text(thumbprint)
    expect(row).to_contain_text("none")
    stored = api.get(f"CertificateMappingRules('{pid}')").json()["d"]
    assert (stored["Kind"], stored["Thumbprint"], stored["IssuerDN"]) == (
        "Thumbprint",
        thumbprint,
        None,
    )


def test_a_bad_dn_is_shown_next_to_its_field(page: Page, api: Api, pid: str) -> None:
    page.goto("/ui/new-rule")
    page.get_by_label("Rule ID").fill(pid)
    page.get_by_label("User", exact=True).fill("someone")
    page.get_by_label("Subject DN").fill("Sender AG in Walldorf")
    page.get_by_label("Issuer DN").fill("CN=Some CA, O=Acme")
    page.get_by_role("button", name="Add rule").click()

    subject = page.get_by_label("Subject DN")
    expect(subject).to_have_attribute("aria-invalid", "true")
    expect(subject).to_have_value("Sender AG in Walldorf")
    error = page.locator("#error-SubjectDN")
    expect(error).to_contain_text("SubjectDN is not a distinguished name")
    expect(page.locator(".field.has-error")).to_have_count(1)
    expect(page.locator(".field.has-error")).to_contain_text("Subject DN")
    expect(page.get_by_role("alert")).to_contain_text("Nothing was saved")
    expect(page.get_by_label("Issuer DN")).to_have_value("CN=Some CA, O=Acme")
    shot(page, "new-rule-error")
    assert api.get(f"CertificateMappingRules('{pid}')").status_code == 404


def test_refusals_name_their_field(ui: httpx.Client, api: Api, pid: str) -> None:
    token = csrf_of(ui.get("/ui/new-rule").text)
    body = {"Id": pid, "Kind": "Thumbprint", "User": "u", "Thumbprint": "ab" * 32}
    api.post("CertificateMappingRules", json=body).raise_for_status()
    cases = [
        ({"kind": "Thumbprint", "Id": pid, "User": "u", "Thumbprint": "cd" * 32}, "Id"),
        ({"kind": "Thumbprint", "Id": pid + "x", "User": "u", "Thumbprint": "abc"}, "Thumbprint"),
        (
            {"kind": "IssuerSerial", "Id": pid + "x", "User": "u", "IssuerDN": "CN=x"},
            "SerialNumber",
        ),
        ({"kind": "Thumbprint", "Id": pid + "x", "User": "", "Thumbprint": "ab" * 32}, "User"),
        ({"kind": "Thumbprint", "Id": "a b", "User": "u", "Thumbprint": "ab" * 32}, "Id"),
    ]
    for data, field in cases:
        r = ui.post("/ui/new-rule", data={**data, "csrf": token})
        assert r.status_code == 400, data
        assert re.findall(r'id="error-(\w+)"', r.text) == [field], (data, r.text)
    r = ui.post("/ui/new-rule", data={"csrf": token, "step": "fill", "Text": "nonsense"})
    assert r.status_code == 400
    assert 'id="error-Certificate"' in r.text and "not an X.509 certificate" in r.text
    assert ui.get("/ui/rules/no-such-rule").status_code == 404
    assert ui.get("/ui/new-rule?mapping=0123").status_code == 404


def test_rule_forms_need_the_token_and_the_role(
    server: Server, ui: httpx.Client, api: Api, pid: str
) -> None:
    body = {"Id": pid, "Kind": "Thumbprint", "User": "u", "Thumbprint": "ab" * 32}
    api.post("CertificateMappingRules", json=body).raise_for_status()
    attempts = [
        ("/ui/new-rule", {**body, "Id": pid + "2", "kind": "Thumbprint"}),
        (f"/ui/rules/{pid}", {"kind": "Thumbprint", "User": "changed", "Thumbprint": "cd" * 32}),
        (f"/ui/rules/{pid}/delete", {}),
    ]
    for url, data in attempts:
        r = ui.post(url, data={**data, "csrf": "forged"})
        assert r.status_code == 403, url
        assert "nothing was changed" in r.text
    assert api.get(f"CertificateMappingRules('{pid}')").json()["d"]["User"] == "u"
    assert api.get(f"CertificateMappingRules('{pid}2')").status_code == 404

    name = f"reader_{pid.lower()}"
    server.add_user(name, "pw", "SomeOtherRole")
    with sign_in(server, name, "pw") as client:
        for url in ("/ui/rules", "/ui/new-rule", f"/ui/rules/{pid}", f"/ui/rules/{pid}/delete"):
            r = client.get(url)
            assert r.status_code == 403, url
            assert ADMIN_ROLE in r.text
