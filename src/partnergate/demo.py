"""``partnergate demo``: the seed scenario end to end, on SQLite in a temporary directory.

It makes a development PKI, starts ``partnergate serve`` with an HTTP and an mTLS listener
and the example flows, creates the local users and the OAuth client with the CLI, and then
configures the Partner Directory only through the public HTTP API, as SAP's blog does:
the certificate-to-user mapping, the three authorised users, the receivers' ``ADDRESS``
parameters and user credentials. Then it sends the six messages (three senders × two
receivers, with Basic, an OAuth bearer token and a client certificate) and two that must be
refused, and exits 0 only when all eight behave.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import click
import httpx

from .security import pki
from .security.principals import PARTNER_DIRECTORY_CONFIGURATOR

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "partner-directory"
SEND = "/http/partner_directory"
ADMIN = "admin"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _step(text: str) -> None:
    click.echo(f"==> {text}")


def _examples() -> Path:
    if EXAMPLES.is_dir():
        return EXAMPLES
    raise click.ClickException(
        f"the example flows are not at {EXAMPLES}; run the demo from a source checkout"
    )


@dataclass
class Demo:
    workdir: Path
    env: dict[str, str]
    http: str
    https: str
    secrets: dict[str, str]
    ca_file: Path
    client: pki.ClientBundle
    stranger: pki.ClientBundle

    def cli(self, *args: str, stdin: str | None = None) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "partnergate", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        if done.returncode != 0:
            raise click.ClickException(f"partnergate {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout


def _prepare(workdir: Path, host: str) -> Demo:
    http = f"{host}:{_free_port(host)}"
    https = f"{host}:{_free_port(host)}"
    pki_dir = workdir / "pki"
    ca = pki.init_ca(pki_dir)
    server = pki.issue_server(ca, pki_dir, [host, "localhost"])
    p12_password = secrets.token_urlsafe(8)
    client = pki.issue_client(ca, pki_dir, "sender_cert", password=p12_password)
    stranger = pki.issue_client(ca, pki_dir, "unmapped_sender", password=p12_password)
    _step(f"PKI in {pki_dir}: CA, server certificate, client certificates for Sender_CERT")
    env = {
        **os.environ,
        "PARTNERGATE_DB": f"sqlite:///{workdir / 'partnergate.db'}",
        "PARTNERGATE_DATA_DIR": str(workdir / "data"),
        "PARTNERGATE_HTTP": http,
        "PARTNERGATE_HTTPS": https,
        "PARTNERGATE_TLS_CERT": str(server.cert_path),
        "PARTNERGATE_TLS_KEY": str(server.key_path),
        "PARTNERGATE_CLIENT_CA": str(ca.cert_path),
        "PARTNERGATE_CLIENT_CERT": "optional",
        "PARTNERGATE_FLOWS": str(_examples()),
        "PARTNERGATE_LOG_LEVEL": "warning",
    }
    words = {
        "admin": secrets.token_urlsafe(12),
        "user_for_sender_basic": secrets.token_urlsafe(12),
        "user_receiver_1": secrets.token_urlsafe(12),
        "user_receiver_2": secrets.token_urlsafe(12),
        "client_sender_oauth": secrets.token_urlsafe(12),
        "p12": p12_password,
    }
    return Demo(workdir, env, http, https, words, ca.cert_path, client, stranger)


def _accounts(demo: Demo) -> None:
    s = demo.secrets
    demo.cli(
        "users",
        "add",
        ADMIN,
        "--role",
        PARTNER_DIRECTORY_CONFIGURATOR,
        "--password-stdin",
        stdin=s["admin"] + "\n",
    )
    demo.cli(
        "users",
        "add",
        "user_for_sender_basic",
        "--password-stdin",
        stdin=s["user_for_sender_basic"] + "\n",
    )
    for n in (1, 2):
        user = f"user_receiver_{n}"
        demo.cli(
            "users",
            "add",
            user,
            "--role",
            f"receiver_{n}.send",
            "--password-stdin",
            stdin=s[user] + "\n",
        )
    demo.cli(
        "clients",
        "add",
        "client_sender_oauth",
        "--secret-stdin",
        stdin=s["client_sender_oauth"] + "\n",
    )
    _step(
        "CLI: local users admin, user_for_sender_basic, user_receiver_1, user_receiver_2; "
        "OAuth client client_sender_oauth"
    )


def _start(demo: Demo) -> subprocess.Popen[bytes]:
    log = open(demo.workdir / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    process = subprocess.Popen(
        [sys.executable, "-m", "partnergate", "serve"],
        env=demo.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_until_up(demo, process)
    except BaseException:  # a failed start, or SIGTERM meanwhile: no server is left behind
        process.kill()
        process.wait()
        raise
    _step(f"server: http://{demo.http} and mTLS https://{demo.https}, flows from {_examples()}")
    _step(
        f"admin UI: http://{demo.http}/ui/ (sign in as {ADMIN}; --keep-running prints the password)"
    )
    return process


def _wait_until_up(demo: Demo, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise click.ClickException(
                "the server exited:\n" + (demo.workdir / "server.log").read_text(errors="replace")
            )
        try:
            if httpx.get(f"http://{demo.http}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise click.ClickException("the server did not start within a minute")
        time.sleep(0.1)


def _configure(demo: Demo) -> None:
    base = f"http://{demo.http}"
    s = demo.secrets
    with httpx.Client(base_url=base, auth=(ADMIN, s["admin"]), timeout=30) as api:
        fetched = api.get("/api/v1/", headers={"X-CSRF-Token": "Fetch"})
        fetched.raise_for_status()
        headers = {"X-CSRF-Token": fetched.headers["x-csrf-token"], "Accept": "application/json"}
        pem = demo.client.cert_path.read_bytes().replace(b"\n", b"\r\n")
        entries: list[tuple[str, dict[str, str], str]] = [
            (
                "CertificateUserMappings",
                {
                    "Id": "12",
                    "User": "user_for_sender_cert",
                    "Certificate": base64.b64encode(pem).decode(),
                },
                "certificate-to-user mapping for user_for_sender_cert",
            ),
            (
                "AuthorizedUsers",
                {"User": "user_for_sender_basic", "Pid": "Sender_BASIC"},
                "authorised user",
            ),
            (
                "AuthorizedUsers",
                {"User": "oauth_client_client_sender_oauth", "Pid": "Sender_OAUTH"},
                "authorised user",
            ),
            (
                "AuthorizedUsers",
                {"User": "user_for_sender_cert", "Pid": "Sender_CERT"},
                "authorised user",
            ),
        ]
        for n in (1, 2):
            entries.append(
                (
                    "StringParameters",
                    {"Pid": f"Receiver_{n}", "Id": "ADDRESS", "Value": f"{base}/cxf/receiver_{n}"},
                    "receiver address",
                )
            )
            entries.append(
                (
                    "UserCredentialParameters",
                    {
                        "Pid": f"Receiver_{n}",
                        "Id": "USER",
                        "User": f"user_receiver_{n}",
                        "Password": s[f"user_receiver_{n}"],
                    },
                    "receiver credentials",
                )
            )
        for entity_set, body, what in entries:
            r = api.post(f"/api/v1/{entity_set}", json=body, headers=headers)
            if r.status_code != 201:
                raise click.ClickException(
                    f"POST /api/v1/{entity_set} answered {r.status_code}: {r.text}"
                )
            shown = {
                k: (v if k not in ("Password", "Certificate") else "…") for k, v in body.items()
            }
            _step(
                f"POST /api/v1/{entity_set} {json.dumps(shown, ensure_ascii=False)} -> 201 ({what})"
            )


def _message(receiver: str, sender: str | None = None) -> bytes:
    claim = f"<Sender>{sender}</Sender>" if sender else ""
    return f"<Message>{claim}<Receiver>{receiver}</Receiver></Message>".encode()


@dataclass(frozen=True)
class Case:
    """One message of the scenario and what must come back."""

    title: str
    body: bytes
    status: int
    answer: str | None = None
    auth: tuple[str, str] | None = None
    token: str | None = None
    cert: pki.ClientBundle | None = None


def _cases(demo: Demo, token: str) -> list[Case]:
    basic = ("user_for_sender_basic", demo.secrets["user_for_sender_basic"])
    cases: list[Case] = []
    for n in (1, 2):
        receiver = f"Receiver_{n}"
        greet = f"<Content>{receiver} greets {{}}</Content>"
        cases += [
            Case(
                f"Sender_BASIC → {receiver} (Basic)",
                _message(receiver),
                200,
                greet.format("Sender_BASIC"),
                auth=basic,
            ),
            Case(
                f"Sender_OAUTH → {receiver} (OAuth bearer)",
                _message(receiver),
                200,
                greet.format("Sender_OAUTH"),
                token=token,
            ),
            Case(
                f"Sender_CERT → {receiver} (client certificate)",
                _message(receiver, "Sender_CERT"),
                200,
                greet.format("Sender_CERT"),
                cert=demo.client,
            ),
        ]
    cases += [
        Case(
            "an unmapped client certificate is refused",
            _message("Receiver_1"),
            401,
            cert=demo.stranger,
        ),
        Case(
            "Sender_BASIC claiming to be Sender_CERT is refused",
            _message("Receiver_2", "Sender_CERT"),
            403,
            auth=basic,
        ),
    ]
    return cases


def _post(demo: Demo, case: Case) -> httpx.Response:
    headers = {"Content-Type": "text/xml"}
    if case.token:
        headers["Authorization"] = f"Bearer {case.token}"
    if case.cert is None:
        return httpx.post(
            f"http://{demo.http}{SEND}",
            content=case.body,
            headers=headers,
            auth=case.auth,
            timeout=30,
        )
    context = ssl.create_default_context(cafile=str(demo.ca_file))
    context.load_cert_chain(case.cert.cert_path, case.cert.key_path)
    with httpx.Client(verify=context, timeout=30) as client:
        return client.post(f"https://{demo.https}{SEND}", content=case.body, headers=headers)


def _send(demo: Demo) -> bool:
    token = httpx.post(
        f"http://{demo.http}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=("client_sender_oauth", demo.secrets["client_sender_oauth"]),
    ).json()["access_token"]
    cases = _cases(demo, token)
    good = 0
    for case in cases:
        r = _post(demo, case)
        ok = r.status_code == case.status and (case.answer is None or r.text == case.answer)
        good += ok
        shown = r.text if r.status_code == 200 else f"{r.status_code} {r.text.strip()[:80]}"
        click.echo(f"{'ok ' if ok else 'BAD'} {case.title}: {shown}")
    click.echo(f"{good} of {len(cases)} messages behaved as expected")
    return good == len(cases)


def _try_it(demo: Demo) -> None:
    s = demo.secrets
    d = demo.workdir / "pki"
    click.echo("")
    click.echo(
        f"Work directory: {demo.workdir} (PKCS#12 password for the client certificates: {s['p12']})"
    )
    click.echo(f"Admin UI: http://{demo.http}/ui/ — user {ADMIN}, password {s['admin']}")
    click.echo(
        f"  curl -u {ADMIN}:{s['admin']} 'http://{demo.http}/api/v1/StringParameters?$format=json'"
    )
    click.echo(
        f"  curl -u user_for_sender_basic:{s['user_for_sender_basic']} -H 'Content-Type: text/xml' "
        f"-d '<Message><Receiver>Receiver_1</Receiver></Message>' http://{demo.http}{SEND}"
    )
    click.echo(
        f"  curl --cacert {d}/ca.crt --cert {d}/sender_cert.crt --key {d}/sender_cert.key "
        f"-H 'Content-Type: text/xml' -d '<Message><Receiver>Receiver_2</Receiver></Message>' "
        f"https://{demo.https}{SEND}"
    )
    click.echo(
        f"  curl --cacert {d}/ca.crt --cert {d}/sender_cert.crt --key {d}/sender_cert.key https://{demo.https}/whoami"
    )


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so that the ``finally`` below stops the server too."""
    raise KeyboardInterrupt


def run_demo(host: str, keep_running: bool = False) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="partnergate-demo-"))
    demo = _prepare(workdir, host)
    _accounts(demo)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    process = _start(demo)
    try:
        _configure(demo)
        passed = _send(demo)
        if keep_running:
            _try_it(demo)
            click.echo("The server keeps running; press Ctrl-C to stop it.")
            try:
                process.wait()
            except KeyboardInterrupt:
                pass
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        signal.signal(signal.SIGTERM, previous)
    if not passed:
        raise click.ClickException(
            f"the scenario did not behave; server log: {workdir / 'server.log'}"
        )
    if not keep_running:
        shutil.rmtree(workdir, ignore_errors=True)
