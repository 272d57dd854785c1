"""Screenshots of the admin UI's main pages at 1280×800 and 390×844, for docs/ui/.

Starts ``partnergate serve`` on SQLite in a temporary directory, fills the Partner
Directory with a small sample through the API, and photographs each page in Debian's
Chromium (``/usr/bin/chromium``) driven by Playwright. Run by ``make screenshots``:

    python scripts/screenshots.py docs/ui
"""

from __future__ import annotations

import base64
import io
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

from partnergate.security import pki
from partnergate.security.principals import PARTNER_DIRECTORY_CONFIGURATOR

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
SIZES = {"desktop": (1280, 800), "phone": (390, 844)}
ADMIN = "admin"
XSLT = b"""<?xml version="1.0" encoding="UTF-8"?>
<xsl:stylesheet version="2.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:template match="/Order">
    <PurchaseOrder number="{@id}"><xsl:value-of select="Buyer"/></PurchaseOrder>
  </xsl:template>
</xsl:stylesheet>
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(workdir: Path, password: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {
        **os.environ,
        "PARTNERGATE_DB": f"sqlite:///{workdir / 'partnergate.db'}",
        "PARTNERGATE_DATA_DIR": str(workdir / "data"),
        "PARTNERGATE_HTTP": f"127.0.0.1:{port}",
        "PARTNERGATE_FLOWS": str(ROOT / "examples" / "partner-directory"),
        "PARTNERGATE_LOG_LEVEL": "warning",
    }
    command = [sys.executable, "-m", "partnergate"]
    subprocess.run(
        [*command, "users", "add", ADMIN, "--role", PARTNER_DIRECTORY_CONFIGURATOR]
        + ["--password-stdin"],
        input=password + "\n",
        text=True,
        env=env,
        check=True,
        capture_output=True,
    )
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen([*command, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return server, url
        except httpx.TransportError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not start: " + (workdir / "server.log").read_text())


def seed(url: str, password: str, workdir: Path) -> str:
    """Three senders and two receivers as in SAP's blog; returns a certificate mapping's Id."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    ca = pki.init_ca(workdir / "pki")
    client = pki.issue_client(ca, workdir / "pki", "sender_cert", password="screenshots")
    entries = [
        (
            "StringParameters",
            {"Pid": "Receiver_1", "Id": "ADDRESS", "Value": "https://r1.example/orders"},
        ),
        ("StringParameters", {"Pid": "Receiver_1", "Id": "RECEIVER_NAME", "Value": "Receiver One"}),
        (
            "StringParameters",
            {"Pid": "Receiver_2", "Id": "ADDRESS", "Value": "https://r2.example/in"},
        ),
        (
            "BinaryParameters",
            {"Pid": "Receiver_1", "Id": "MAPPING", "ContentType": "xsl", "Value": b64(XSLT)},
        ),
        (
            "UserCredentialParameters",
            {
                "Pid": "Receiver_1",
                "Id": "LOGIN",
                "User": "user_receiver_1",
                "Password": secrets.token_urlsafe(9),
            },
        ),
        (
            "AlternativePartners",
            {"Pid": "Receiver_1", "Agency": "GS1", "Scheme": "GLN", "Id": "4012345000009"},
        ),
        ("AuthorizedUsers", {"Pid": "Sender_BASIC", "User": "user_for_sender_basic"}),
        ("AuthorizedUsers", {"Pid": "Sender_OAUTH", "User": "client_sender_oauth"}),
        ("AuthorizedUsers", {"Pid": "Sender_CERT", "User": "user_for_sender_cert"}),
        ("StringParameters", {"Pid": "Sender_BASIC", "Id": "RECEIVER", "Value": "Receiver_1"}),
    ]
    with httpx.Client(base_url=url + "/api/v1/", auth=(ADMIN, password), timeout=30) as api:
        token = api.get("", headers={"X-CSRF-Token": "Fetch"}).headers.get("x-csrf-token", "")
        headers = {"X-CSRF-Token": token, "Accept": "application/json"}
        for entity_set, body in entries:
            api.post(entity_set, json=body, headers=headers).raise_for_status()
        # A change, so Receiver_1's History tab has a diff to show.
        api.put(
            "StringParameters(Pid='Receiver_1',Id='ADDRESS')",
            json={"Value": "https://r1.example/v2/orders"},
            headers=headers,
        ).raise_for_status()
        mapping = api.post(
            "CertificateUserMappings",
            json={
                "User": "user_for_sender_cert",
                "Certificate": b64(client.cert_path.read_bytes()),
            },
            headers=headers,
        )
        mapping.raise_for_status()
        return str(mapping.json()["d"]["Id"])


def import_zip(workdir: Path) -> Path:
    """A zip as the UI's Export writes it: one new partner and one changed address."""
    files = {
        "partner-directory/Receiver_2/String.properties": "ADDRESS=https://r2.example/v2/in\n",
        "partner-directory/Receiver_3/String.properties": (
            "ADDRESS=https://r3.example/orders\nRECEIVER_NAME=Receiver Three\n"
        ),
        "partner-directory/Receiver_3/AlternativePartners.yaml": (
            "- Agency: GS1\n  Id: '4012345000016'\n  Scheme: GLN\n"
        ),
    }
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    path = workdir / "partner-directory.zip"
    path.write_bytes(data.getvalue())
    return path


def photograph(url: str, password: str, mapping: str, out: Path, upload: Path) -> list[Path]:
    pages = {
        "partners": "/ui/partners",
        "partner": "/ui/partners/Receiver_1",
        "new-partner": "/ui/new-partner",
        "binary-parameter": "/ui/partners/Receiver_1/binary-parameters/edit?id=MAPPING",
        "certificates": "/ui/certificates",
        "certificate": f"/ui/certificates/{mapping}",
        "flows": "/ui/flows",
        "search": "/ui/search?q=receiver",
        "grid": "/ui/grid?set=string-parameters",
        "accounts": "/ui/accounts",
        "document": "/ui/documents/Receiver_1/MAPPING",
        "history": "/ui/partners/Receiver_1/history",
    }
    written: list[Path] = []
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--disable-gpu"]
        )
        for size, (width, height) in SIZES.items():
            context = browser.new_context(base_url=url, viewport={"width": width, "height": height})
            tab = context.new_page()
            sign_in(tab, password)
            for name, path in pages.items():
                tab.goto(path)
                written.append(out / f"{name}-{size}.png")
                tab.screenshot(path=str(written[-1]))
            tab.goto("/ui/import")
            tab.get_by_label("Zip file").set_input_files(str(upload))
            tab.get_by_role("button", name="Show the plan").click()
            tab.get_by_role("heading", name="Import plan").wait_for()
            written.append(out / f"import-plan-{size}.png")
            tab.screenshot(path=str(written[-1]))
            if size == "phone":
                tab.goto("/ui/partners")
                tab.get_by_role("button", name="Menu").click()
                written.append(out / "menu-phone.png")
                tab.screenshot(path=str(written[-1]))
            context.close()
        browser.close()
    return written


def sign_in(tab: Page, password: str) -> None:
    tab.goto("/ui/")
    tab.get_by_label("User name").fill(ADMIN)
    tab.get_by_label("Password").fill(password)
    tab.get_by_role("button", name="Sign in").click()
    tab.wait_for_url("**/ui/partners")


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "ui")
    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="partnergate-screenshots-") as tmp:
        server, url = start(Path(tmp), password)
        try:
            mapping = seed(url, password, Path(tmp))
            upload = import_zip(Path(tmp))
            for path in photograph(url, password, mapping, out, upload):
                print(path)
        finally:
            server.terminate()
            server.wait(timeout=15)


if __name__ == "__main__":
    main()
