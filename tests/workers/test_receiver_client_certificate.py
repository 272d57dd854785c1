"""A flow's ``call`` step with ``client-certificate:`` presents the keystore the settings
name (``[keystores.NAME]``) to a receiver that demands client certificates, over real
TLS, and trusts the receiver's CA from ``receiver_ca``."""

from __future__ import annotations

import secrets
import ssl
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from partnergate.security import pki

from ..conftest import start_server, stop_server

FLOW = textwrap.dedent(
    """\
    flow: Mutual TLS call {name}
    endpoint: /http/mtls_{name}
    role: workers.send
    steps:
      - call:
          address: https://127.0.0.1:{port}/orders
          {keystore}
          timeout: 10
    """
)


class _Receiver(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        peer = self.connection.getpeercert()  # type: ignore[attr-defined]
        subject = dict(item[0] for item in peer["subject"]) if peer else {}
        body = f"hello {subject.get('commonName', 'nobody')}".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, pki.CA, Path]]:
    root = tmp_path_factory.mktemp("mtls-receiver")
    ca = pki.init_ca(root / "ca")
    server_bundle = pki.issue_server(ca, root / "out", ["127.0.0.1"])
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=ca.cert_path)
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_cert_chain(server_bundle.chain_path, server_bundle.key_path)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], ca, root
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_call_presents_the_configured_client_certificate(
    receiver: tuple[int, pki.CA, Path],
    tmp_path_factory: pytest.TempPathFactory,
    store_url: str,
) -> None:
    port, ca, root = receiver
    client = pki.issue_client(ca, root / "out", "partnergate-to-receivers", password="pw")
    tmp = tmp_path_factory.mktemp("mtls-gateway")
    flows = tmp / "flows"
    flows.mkdir()
    name = secrets.token_hex(4)
    keystore = "client-certificate: receivers"
    (flows / "with.yaml").write_text(FLOW.format(name=name, port=port, keystore=keystore))
    (flows / "without.yaml").write_text(FLOW.format(name=name + "_no", port=port, keystore=""))
    config = tmp / "partnergate.toml"
    config.write_text(
        textwrap.dedent(
            f"""\
            receiver_ca = "{ca.cert_path}"

            [keystores.receivers]
            cert = "{client.chain_path}"
            key = "{client.key_path}"
            """
        )
    )
    server = start_server(
        tmp, store_url, {"PARTNERGATE_FLOWS": str(flows), "PARTNERGATE_CONFIG": str(config)}
    )
    try:
        sender = ("mtls_sender", secrets.token_urlsafe(10))
        server.add_user(*sender, "workers.send")
        sent = httpx.post(f"{server.url}/http/mtls_{name}", content=b"<Order/>", auth=sender)
        assert sent.status_code == 200, sent.text
        assert sent.text == "hello partnergate-to-receivers"
        # the same receiver without the keystore: its handshake fails, a 502 for the sender
        refused = httpx.post(f"{server.url}/http/mtls_{name}_no", content=b"<Order/>", auth=sender)
        assert refused.status_code == 502, refused.text
    finally:
        stop_server(server)
