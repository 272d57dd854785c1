"""A server with the seed scenario's flows plus one that records business keys, shared by
the message-monitoring tests."""

from __future__ import annotations

import secrets
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ..conftest import Api, Server, start_server, stop_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "partner-directory"
SEND = "/http/partner_directory"
ORDERS = "/http/orders"

ORDERS_FLOW = """\
flow: Orders
endpoint: /http/orders
steps:
  - name: keep the business keys
    custom-header:
      OrderNumber: {xpath: /Order/Number}
      GLN: {xpath: /Order/GLN, optional: true}
  - name: add the buyer
    script: keys.py
  - name: answer
    reply:
      content-type: application/xml
      body: <Ok/>
"""

KEYS_SCRIPT = """\
import logging


def process(message, pd):
    message.message_log.add_custom_header_property("Buyer", "ACME Corp")
    logging.getLogger("orders.script").warning("the buyer is kept")
"""


@dataclass
class Scenario:
    server: Server
    basic: tuple[str, str]
    receiver_password: str


@pytest.fixture(scope="package")
def scenario(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[Scenario]:
    flows = tmp_path_factory.mktemp("monitor-flows")
    for name in ("sender.yaml", "receiver_1.yaml", "receiver_2.yaml"):
        shutil.copy(EXAMPLES / name, flows / name)
    (flows / "orders.yaml").write_text(ORDERS_FLOW)
    (flows / "keys.py").write_text(KEYS_SCRIPT)
    srv = start_server(
        tmp_path_factory.mktemp("monitor"), store_url, {"PARTNERGATE_FLOWS": str(flows)}
    )
    try:
        basic = ("monitor_sender_" + uuid.uuid4().hex[:6], secrets.token_urlsafe(10))
        srv.add_user(*basic)
        password = "Rcv-" + secrets.token_urlsafe(12)
        srv.add_user("monitor_receiver_2", password, "receiver_2.send")
        with Api(srv) as api:
            api.delete("Partners('Receiver_2')")
            api.post(
                "StringParameters",
                json={"Pid": "Receiver_2", "Id": "ADDRESS", "Value": f"{srv.url}/cxf/receiver_2"},
            ).raise_for_status()
            api.post(
                "UserCredentialParameters",
                json={
                    "Pid": "Receiver_2",
                    "Id": "USER",
                    "User": "monitor_receiver_2",
                    "Password": password,
                },
            ).raise_for_status()
            api.post(
                "AuthorizedUsers", json={"User": basic[0], "Pid": "Sender_OPS"}
            ).raise_for_status()
        yield Scenario(srv, basic, password)
    finally:
        stop_server(srv)


def send(s: Scenario, receiver: str, path: str = SEND, body: bytes | None = None) -> httpx.Response:
    content = body or f"<Message><Receiver>{receiver}</Receiver></Message>".encode()
    return httpx.post(
        s.server.url + path,
        content=content,
        headers={"Content-Type": "application/xml"},
        auth=s.basic,
        timeout=30,
    )


def order(s: Scenario, number: str, gln: str | None = None) -> str:
    gln_part = f"<GLN>{gln}</GLN>" if gln else ""
    body = f"<Order><Number>{number}</Number>{gln_part}</Order>".encode()
    r = send(s, "", ORDERS, body)
    assert r.status_code == 200, r.text
    return r.headers["sap_messageprocessinglogid"]
