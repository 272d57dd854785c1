"""Two nodes over one PostgreSQL store: a write on one node reaches the other's cache at once."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import httpx
import pytest

from ..conftest import STORE, Api, start_server, stop_server
from .test_sender_flow import EXAMPLES, SEND, message

pytestmark = pytest.mark.skipif(
    STORE != "postgresql",
    reason="a fleet shares a PostgreSQL store; SQLite is one node (this test runs in the "
    "PostgreSQL pass of make test)",
)


def test_write_on_one_node_invalidates_the_other(
    tmp_path_factory: pytest.TempPathFactory, store_url: str
) -> None:
    env = {"PARTNERGATE_FLOWS": str(EXAMPLES)}
    tmp = tmp_path_factory.mktemp("fleet")
    (tmp / "a").mkdir()
    a = start_server(tmp / "a", store_url, env)
    key_file = Path(a.env["PARTNERGATE_DATA_DIR"]) / "credentials.key"
    (tmp / "b" / "data").mkdir(parents=True)
    (tmp / "b" / "data" / "credentials.key").write_bytes(key_file.read_bytes())
    b = start_server(tmp / "b", store_url, env)
    try:
        sender = ("fleet_sender", secrets.token_urlsafe(8))
        a.add_user(*sender)
        receiver_pw = secrets.token_urlsafe(8)
        a.add_user("fleet_receiver", receiver_pw, "receiver_1.send", "receiver_2.send")
        with Api(a) as api:
            api.post("AuthorizedUsers", json={"User": sender[0], "Pid": "Sender_FLEET"})
            for n in (1, 2):
                api.post(
                    "StringParameters",
                    json={
                        "Pid": f"Fleet_R{n}",
                        "Id": "ADDRESS",
                        "Value": f"{b.url}/cxf/receiver_{n}",
                    },
                )
                api.post(
                    "UserCredentialParameters",
                    json={
                        "Pid": f"Fleet_R{n}",
                        "Id": "USER",
                        "User": "fleet_receiver",
                        "Password": receiver_pw,
                    },
                )
        url = b.url + SEND

        def send() -> str:
            return httpx.post(url, content=message("Fleet_R2"), auth=sender, timeout=30).text

        assert (
            send() == "<Content>Receiver_2 greets Sender_FLEET</Content>"
        )  # node b caches ADDRESS
        with Api(a) as api:
            r = api.put(
                "StringParameters(Pid='Fleet_R2',Id='ADDRESS')",
                json={"Value": f"{b.url}/cxf/receiver_1"},
            )
            assert r.status_code == 204
        deadline = time.monotonic() + 5
        answer = send()
        while answer.startswith("<Content>Receiver_2") and time.monotonic() < deadline:
            time.sleep(0.05)
            answer = send()
        assert answer == "<Content>Receiver_1 greets Sender_FLEET</Content>"
    finally:
        stop_server(b)
        stop_server(a)
