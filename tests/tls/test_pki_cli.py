"""``partnergate pki``: files a partner can use with curl, OpenSSL and SoapUI, end to end."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from partnergate.security.certificates import load_certificate, mapping_id

from ..conftest import cli, free_port
from .conftest import start_tls_server, stop

PASSWORD = "partner-keystore-pw"


def pki(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return cli("pki", *args, env=dict(os.environ), stdin=stdin)


@pytest.mark.parametrize(
    "command", [[], ["init"], ["server"], ["client"], ["mapping-body"]], ids=str
)
def test_help(command: list[str]) -> None:
    done = pki(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout


def test_pki_end_to_end_with_curl_and_openssl(tmp_path: Path, store_url: str) -> None:
    ca_dir, out = tmp_path / "ca", tmp_path / "partner"
    done = pki("init", str(ca_dir))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(ca_dir / "ca.key"), str(ca_dir / "ca.crt")]
    assert stat.S_IMODE((ca_dir / "ca.key").stat().st_mode) == 0o600

    done = pki("server", str(ca_dir), "--host", "127.0.0.1", "--host", "localhost")
    assert done.returncode == 0, done.stderr
    client = ["client", str(ca_dir), "Sender_CERT", "--out", str(out), "--days", "30"]
    done = pki(*client, "--password-stdin", stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    names = ["Sender_CERT.key", "Sender_CERT.crt", "Sender_CERT-chain.pem", "Sender_CERT.p12"]
    assert done.stdout.split() == [str(out / n) for n in names]
    cert = load_certificate((out / "Sender_CERT.crt").read_bytes())
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days == 30

    done = pki("mapping-body", str(out / "Sender_CERT.crt"), "--user", "user_for_sender_cert")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["User"] == "user_for_sender_cert"
    assert mapping_id(load_certificate(base64.b64decode(body["Certificate"]))) == mapping_id(cert)

    if shutil.which("openssl"):
        keystore = ["openssl", "pkcs12", "-info", "-noout", "-in", str(out / "Sender_CERT.p12")]
        opened = subprocess.run([*keystore, "-passin", f"pass:{PASSWORD}"], capture_output=True)
        assert opened.returncode == 0, opened.stderr
        wrong = subprocess.run([*keystore, "-passin", "pass:wrong"], capture_output=True)
        assert wrong.returncode != 0

    if not shutil.which("curl"):
        return
    port = free_port()
    env = {
        "PARTNERGATE_HTTPS": f"127.0.0.1:{port}",
        "PARTNERGATE_TLS_CERT": str(ca_dir / "server-chain.pem"),
        "PARTNERGATE_TLS_KEY": str(ca_dir / "server.key"),
        "PARTNERGATE_CLIENT_CA": str(ca_dir / "ca.crt"),
        "PARTNERGATE_CLIENT_CERT": "required",
    }
    server = start_tls_server(tmp_path, store_url, env, port)
    pem_files = ["--cert", f"{out}/Sender_CERT-chain.pem", "--key", f"{out}/Sender_CERT.key"]
    p12 = ["--cert-type", "P12", "--cert", f"{out}/Sender_CERT.p12:{PASSWORD}"]
    try:
        for host, credentials in [("127.0.0.1", pem_files), ("localhost", p12)]:
            curl = subprocess.run(
                [
                    "curl",
                    "-sS",
                    "--fail",
                    "--cacert",
                    str(ca_dir / "ca.crt"),
                    *credentials,
                    f"https://{host}:{port}/health",
                ],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert curl.returncode == 0, curl.stderr
            assert json.loads(curl.stdout) == {"status": "ok"}
    finally:
        stop(server.process)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["init", "{ca}"], "already holds a CA"),
        (["server", "{empty}", "--host", "x"], "no CA in"),
        (["server", "{ca}"], "Missing option '--host'"),
        (["client", "{ca}", "bad/name", "--password-stdin"], "must be letters, digits"),
        (["client", "{ca}", "nopassword", "--password-stdin"], "no password on standard input"),
        (["client", "{ca}", "x", "--password-stdin", "--days", "0"], "Invalid value for '--days'"),
        (["mapping-body", "{ca}/ca.key", "--user", "u"], "PEM holds PRIVATE KEY, no CERTIFICATE"),
        (["mapping-body", "{ca}/missing.crt", "--user", "u"], "No such file or directory"),
        (["mapping-body", "{ca}/ca.crt"], "Missing option '--user'"),
    ],
)
def test_errors_are_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    assert pki("init", str(tmp_path / "ca")).returncode == 0
    (tmp_path / "empty").mkdir()
    paths = {"ca": tmp_path / "ca", "empty": tmp_path / "empty"}
    stdin = "" if "nopassword" in args else "pw\n"
    done = pki(*(a.format(**paths) for a in args), stdin=stdin)
    assert done.returncode != 0
    assert message in done.stderr
    assert len([line for line in done.stderr.splitlines() if line.startswith("Error")]) == 1
