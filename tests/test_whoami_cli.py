"""``partnergate whoami``: what a flow endpoint would make of a sender, read from the store.

The mappings, rules and authorised users are made through the API of the test server; the
command reads the same store offline, as an administrator runs it on a node.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from partnergate.security import pki
from partnergate.security.certificates import (
    CertificateInfo,
    issuer_dn,
    pem_base64,
    subject_dn,
)

from .conftest import Api, Server

ROLE = "ESBMessaging.send"
LINE = re.compile(r"(\S+(?: \S+)*) {2,}(.*)")


def whoami(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    return server.cli("whoami", *args)


def facts(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The printed lines as label → value: a label is words with single spaces between."""
    found = (LINE.fullmatch(line) for line in done.stdout.splitlines())
    return {m.group(1): m.group(2) for m in found if m}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> pki.CA:
    return pki.init_ca(tmp_path_factory.mktemp("ca"), "whoami test CA")


def client(ca: pki.CA, tmp_path: Path, **kw: object) -> pki.ClientBundle:
    name = "sender_" + uuid.uuid4().hex[:8]
    return pki.issue_client(ca, tmp_path, name, password="pw", **kw)  # type: ignore[arg-type]


def authorise(api: Api, user: str, pid: str) -> None:
    api.post("AuthorizedUsers", json={"User": user, "Pid": pid}).raise_for_status()


def map_certificate(api: Api, bundle: pki.ClientBundle, user: str) -> None:
    body = {"User": user, "Certificate": pem_base64(bundle.certificate)}
    api.post("CertificateUserMappings", json=body).raise_for_status()


def test_help_says_what_the_exit_code_means(server: Server) -> None:
    done = whoami(server, "--help")
    assert done.returncode == 0
    assert "Exits 0 when the sender would be let in" in " ".join(done.stdout.split())


def test_a_mapped_certificate_of_an_authorised_user_is_let_in(
    server: Server, api: Api, ca: pki.CA, tmp_path: Path, pid: str
) -> None:
    bundle = client(ca, tmp_path)
    user = f"user_{pid.lower()}"
    map_certificate(api, bundle, user)
    authorise(api, user, pid)
    info = CertificateInfo.from_certificate(bundle.certificate)

    done = whoami(server, "--cert", str(bundle.cert_path))
    assert done.returncode == 0, done.stdout + done.stderr
    shown = facts(done)
    assert shown["subject"] == info.subject
    assert shown["issuer"] == "CN=whoami test CA"
    assert shown["serial"] == info.serial
    assert shown["sha-256"] == info.sha256
    assert shown["validity"].endswith("UTC: valid now")
    assert shown["mapping id"] == info.mapping_id
    assert shown["mapped"] == f"yes, CertificateUserMappings('{info.mapping_id}')"
    assert "mapping rule" not in shown
    assert shown["user"] == user
    assert shown["authorised user"] == f"yes, of partner '{pid}'"
    assert shown["roles"] == ROLE
    assert shown["let in"] == "yes"


def test_the_client_ca_check_is_the_tls_listeners(
    server: Server, api: Api, ca: pki.CA, tmp_path: Path, pid: str
) -> None:
    bundle = client(ca, tmp_path)
    user = f"user_{pid.lower()}"
    map_certificate(api, bundle, user)
    authorise(api, user, pid)
    trusted = whoami(server, "--cert", str(bundle.chain_path), "--client-ca", str(ca.cert_path))
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert facts(trusted)["client ca"].startswith("accepted")

    stranger = pki.init_ca(tmp_path / "other", "some other CA")
    other = str(stranger.cert_path)
    refused = whoami(server, "--cert", str(bundle.cert_path), "--client-ca", other)
    assert refused.returncode == 1
    shown = facts(refused)
    assert shown["client ca"] == (
        "refused: untrusted issuer: issuer 'CN=whoami test CA' is not a trusted CA"
    )
    assert shown["user"] == user
    assert shown["let in"].startswith("no: the TLS listener refuses the certificate")


def test_a_renewed_certificate_is_let_in_by_a_mapping_rule(
    server: Server, api: Api, ca: pki.CA, tmp_path: Path, pid: str
) -> None:
    bundle = client(ca, tmp_path)
    user = f"user_{pid.lower()}"
    authorise(api, user, pid)
    rule = {
        "Id": pid,
        "Kind": "SubjectIssuer",
        "User": user,
        "SubjectDN": subject_dn(bundle.certificate),
        "IssuerDN": issuer_dn(bundle.certificate),
    }
    api.post("CertificateMappingRules", json=rule).raise_for_status()

    done = whoami(server, "--cert", str(bundle.cert_path))
    assert done.returncode == 0, done.stdout + done.stderr
    shown = facts(done)
    assert shown["mapped"] == "no CertificateUserMappings entry names this certificate"
    assert shown["mapping rule"] == f"CertificateMappingRules('{pid}') (SubjectIssuer)"
    assert shown["user"] == user
    assert shown["authorised user"] == f"yes, of partner '{pid}'"
    assert shown["let in"] == "yes"


def test_an_unmapped_certificate_is_refused_with_the_servers_reason(
    server: Server, ca: pki.CA, tmp_path: Path
) -> None:
    bundle = client(ca, tmp_path)
    der = tmp_path / "unmapped.der"
    der.write_bytes(bundle.certificate.public_bytes(Encoding.DER))
    done = whoami(server, "--cert", str(der))
    assert done.returncode == 1
    shown = facts(done)
    assert shown["mapping rule"] == "none"
    assert shown["user"] == "none"
    assert shown["roles"] == "none"
    info = CertificateInfo.from_certificate(bundle.certificate)
    assert shown["let in"].startswith("no: certificate subject")
    assert "is not mapped to a user: no CertificateUserMappings entry" in shown["let in"]
    assert f"(its Id would be '{info.mapping_id}')" in shown["let in"]


def test_a_mapped_user_without_a_partner_is_refused(
    server: Server, api: Api, ca: pki.CA, tmp_path: Path, pid: str
) -> None:
    bundle = client(ca, tmp_path)
    user = f"lonely_{pid.lower()}"
    map_certificate(api, bundle, user)
    done = whoami(server, "--cert", str(bundle.cert_path))
    assert done.returncode == 1
    shown = facts(done)
    assert shown["user"] == user
    assert shown["authorised user"] == "no: not an authorised user of any partner"
    assert shown["let in"] == f"no: without {ROLE} a flow endpoint answers 403"


def test_an_expired_certificate_is_refused_though_mapped(
    server: Server, api: Api, ca: pki.CA, tmp_path: Path, pid: str
) -> None:
    start = datetime.now(UTC) - timedelta(days=40)
    bundle = client(ca, tmp_path, not_before=start, days=30)
    user = f"user_{pid.lower()}"
    map_certificate(api, bundle, user)
    authorise(api, user, pid)
    done = whoami(server, "--cert", str(bundle.cert_path))
    assert done.returncode == 1
    shown = facts(done)
    assert shown["validity"].endswith("UTC: expired")
    assert shown["mapped"].startswith("yes")
    assert shown["authorised user"] == f"yes, of partner '{pid}'"
    assert shown["roles"] == "none"
    assert shown["let in"].endswith("is outside its validity period")


def test_a_local_user_has_its_own_roles_and_its_partners(
    server: Server, api: Api, pid: str
) -> None:
    name = f"basic_{pid.lower()}"
    server.add_user(name, "pw", "SomeRole")
    refused = whoami(server, "--user", name)
    assert refused.returncode == 1
    shown = facts(refused)
    assert shown["local user"] == "yes, with roles: SomeRole"
    assert shown["authorised user"] == "no: not an authorised user of any partner"
    assert shown["roles"] == "SomeRole"

    authorise(api, name, pid)
    done = whoami(server, "--user", name)
    assert done.returncode == 0, done.stdout
    shown = facts(done)
    assert shown["authorised user"] == f"yes, of partner '{pid}'"
    assert shown["roles"] == f"{ROLE} SomeRole"
    assert shown["let in"] == "yes"

    explicit = f"sender_{pid.lower()}"
    server.add_user(explicit, "pw", ROLE)
    assert whoami(server, "--user", explicit).returncode == 0

    unknown = whoami(server, "--user", f"nobody_{pid.lower()}")
    assert unknown.returncode == 1
    assert facts(unknown)["local user"].startswith("none: there is no local user")


def test_an_oauth_client_is_its_oauth_client_user(server: Server, api: Api, pid: str) -> None:
    client_id = f"c_{pid.lower()}"
    server.add_client(client_id, "secret")
    refused = whoami(server, "--client", client_id)
    assert refused.returncode == 1
    assert facts(refused)["user"] == f"oauth_client_{client_id}"
    assert facts(refused)["OAuth client"] == "yes, with roles: (none)"

    authorise(api, f"oauth_client_{client_id}", pid)
    done = whoami(server, "--client", client_id)
    assert done.returncode == 0, done.stdout
    shown = facts(done)
    assert shown["authorised user"] == f"yes, of partner '{pid}'"
    assert shown["roles"] == ROLE

    unknown = whoami(server, "--client", f"none_{pid.lower()}")
    assert unknown.returncode == 1


def test_errors_are_one_line(server: Server, ca: pki.CA, tmp_path: Path) -> None:
    bundle = client(ca, tmp_path)
    cert = str(bundle.cert_path)
    missing = tmp_path / "missing.pem"
    cases = [
        (["--cert", str(missing)], f"{missing}: No such file or directory"),
        (["--cert", str(bundle.key_path)], "not an X.509 certificate: PEM holds PRIVATE KEY"),
        (["--cert", cert, "--client-ca", str(missing)], f"{missing}: No such file"),
    ]
    for args, message in cases:
        done = whoami(server, *args)
        assert done.returncode == 1, args
        assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr
        assert done.stdout == ""
    for args in (["--user", "a", "--client", "b"], [], ["--user", "a", "--client-ca", "x"]):
        done = whoami(server, *args)
        assert done.returncode == 2, args
        assert "Traceback" not in done.stderr
