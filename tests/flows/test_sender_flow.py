"""The seed scenario's flows over HTTP against the real server: Basic and OAuth senders,
refusals, the message processing log, and instant cache invalidation."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ..conftest import Api, Server, start_server, stop_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "partner-directory"
SEND = "/http/partner_directory"


@dataclass
class Scenario:
    server: Server
    basic: tuple[str, str]
    oauth_token: str


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[Scenario]:
    srv = start_server(
        tmp_path_factory.mktemp("flows"), store_url, {"PARTNERGATE_FLOWS": str(EXAMPLES)}
    )
    try:
        basic = ("user_for_sender_basic", secrets.token_urlsafe(10))
        srv.add_user(*basic)
        srv.add_client("client_sender_oauth", "oauth-secret")
        passwords = {n: secrets.token_urlsafe(10) for n in ("user_receiver_1", "user_receiver_2")}
        srv.add_user("user_receiver_1", passwords["user_receiver_1"], "receiver_1.send")
        srv.add_user(
            "user_receiver_2", passwords["user_receiver_2"], "receiver_2.send", "receiver_1.send"
        )
        with Api(srv) as api:
            for n in (1, 2):
                api.delete(f"Partners('Receiver_{n}')")  # the store is shared across modules
                assert (
                    api.post(
                        "StringParameters",
                        json={
                            "Pid": f"Receiver_{n}",
                            "Id": "ADDRESS",
                            "Value": f"{srv.url}/cxf/receiver_{n}",
                        },
                    ).status_code
                    == 201
                )
                assert (
                    api.post(
                        "UserCredentialParameters",
                        json={
                            "Pid": f"Receiver_{n}",
                            "Id": "USER",
                            "User": f"user_receiver_{n}",
                            "Password": passwords[f"user_receiver_{n}"],
                        },
                    ).status_code
                    == 201
                )
            for user, pid in (
                ("user_for_sender_basic", "Sender_BASIC"),
                ("oauth_client_client_sender_oauth", "Sender_OAUTH"),
            ):
                assert (
                    api.post("AuthorizedUsers", json={"User": user, "Pid": pid}).status_code == 201
                )
        token = httpx.post(
            srv.url + "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("client_sender_oauth", "oauth-secret"),
        ).json()["access_token"]
        yield Scenario(srv, basic, token)
    finally:
        stop_server(srv)


def message(receiver: str, sender: str | None = None) -> bytes:
    claim = f"<Sender>{sender}</Sender>" if sender else ""
    return f"<Message>{claim}<Receiver>{receiver}</Receiver></Message>".encode()


def post(s: Scenario, body: bytes, **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
    return httpx.post(
        s.server.url + SEND,
        content=body,
        headers={"Content-Type": "text/xml", **kw.pop("headers", {})},
        timeout=30,
        **kw,
    )


def test_basic_sender_reaches_both_receivers(scenario: Scenario) -> None:
    for n in (1, 2):
        r = post(scenario, message(f"Receiver_{n}"), auth=scenario.basic)
        assert r.status_code == 200, r.text
        assert r.text == f"<Content>Receiver_{n} greets Sender_BASIC</Content>"
        assert r.headers["sap_messageprocessinglogid"]


def test_oauth_sender(scenario: Scenario) -> None:
    r = post(
        scenario,
        message("Receiver_2", "Sender_OAUTH"),
        headers={"Authorization": f"Bearer {scenario.oauth_token}"},
    )
    assert r.status_code == 200, r.text
    assert r.text == "<Content>Receiver_2 greets Sender_OAUTH</Content>"


def test_refusals_never_reach_the_flow(scenario: Scenario) -> None:
    srv = scenario.server
    assert post(scenario, message("Receiver_1")).status_code == 401
    assert (
        post(scenario, message("Receiver_1"), auth=(scenario.basic[0], "wrong")).status_code == 401
    )
    outsider = ("outsider_" + uuid.uuid4().hex[:6], "pw-outsider")
    srv.add_user(*outsider)
    r = post(scenario, message("Receiver_1"), auth=outsider)
    assert r.status_code == 403
    assert f"user '{outsider[0]}' lacks role ESBMessaging.send" in srv.log()


def test_sender_claiming_another_partner_is_403_and_logged(scenario: Scenario) -> None:
    r = post(scenario, message("Receiver_1", "Sender_OAUTH"), auth=scenario.basic)
    assert r.status_code == 403
    guid = r.headers["sap_messageprocessinglogid"]
    with Api(scenario.server) as api:
        entry = api.get(f"MessageProcessingLogs('{guid}')").json()["d"]
        assert entry["Status"] == "FAILED" and entry["Sender"] == "Sender_BASIC"
        assert entry["IntegrationFlowName"]
        text = api.get(f"MessageProcessingLogs('{guid}')/ErrorInformation/$value").text
        assert "Sender_OAUTH" in text
        failed = api.get(
            "MessageProcessingLogs",
            params={"$filter": "Status eq 'FAILED'", "$orderby": "LogStart desc"},
        ).json()["d"]["results"]
        assert guid in [e["MessageGuid"] for e in failed]
        assert api.delete(f"MessageProcessingLogs('{guid}')").status_code == 405


def test_completed_message_is_logged(scenario: Scenario) -> None:
    r = post(scenario, message("Receiver_1"), auth=scenario.basic)
    guid = r.headers["sap_messageprocessinglogid"]
    with Api(scenario.server) as api:
        entry = api.get(f"MessageProcessingLogs('{guid}')").json()["d"]
        assert entry["Status"] == "COMPLETED" and entry["Receiver"] == "Receiver_1"
        assert entry["LogEnd"] is not None


def test_changed_address_is_used_by_the_next_message(scenario: Scenario) -> None:
    srv = scenario.server
    assert post(scenario, message("Receiver_2"), auth=scenario.basic).text.startswith(
        "<Content>Receiver_2"
    )
    with Api(srv) as api:
        key = "StringParameters(Pid='Receiver_2',Id='ADDRESS')"
        assert api.put(key, json={"Value": f"{srv.url}/cxf/receiver_1"}).status_code == 204
        try:
            r = post(scenario, message("Receiver_2"), auth=scenario.basic)
            assert r.text == "<Content>Receiver_1 greets Sender_BASIC</Content>"
        finally:
            api.put(key, json={"Value": f"{srv.url}/cxf/receiver_2"})
    assert post(scenario, message("Receiver_2"), auth=scenario.basic).text.startswith(
        "<Content>Receiver_2"
    )


def test_removed_authorized_user_loses_access_at_once(scenario: Scenario) -> None:
    srv = scenario.server
    user = ("temp_" + uuid.uuid4().hex[:6], "pw-temp-user")
    srv.add_user(*user)
    with Api(srv) as api:
        api.post("AuthorizedUsers", json={"User": user[0], "Pid": "Sender_TEMP"})
        assert (
            post(scenario, message("Receiver_1"), auth=user).text
            == "<Content>Receiver_1 greets Sender_TEMP</Content>"
        )
        assert api.delete(f"AuthorizedUsers('{user[0]}')").status_code == 204
    assert post(scenario, message("Receiver_1"), auth=user).status_code == 403


def test_missing_receiver_parameter_is_404_and_unreadable_message_400(scenario: Scenario) -> None:
    r = post(scenario, message("Receiver_9"), auth=scenario.basic)
    assert r.status_code == 404 and "ADDRESS" in r.text
    assert post(scenario, b"<not-xml", auth=scenario.basic).status_code == 400


def test_no_flow_and_wrong_method(scenario: Scenario) -> None:
    assert httpx.post(scenario.server.url + "/http/nowhere", auth=scenario.basic).status_code == 404
    assert httpx.get(scenario.server.url + SEND, auth=scenario.basic).status_code == 405


def test_flow_hot_reload(tmp_path: Path, store_url: str) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    srv = start_server(tmp_path, store_url, {"PARTNERGATE_FLOWS": str(flows)})
    try:
        user = ("reload_" + uuid.uuid4().hex[:6], "pw-reload")
        srv.add_user(*user, "ESBMessaging.send")
        url = srv.url + "/http/hello"
        assert httpx.post(url, auth=user).status_code == 404
        (flows / "hello.yaml").write_text(
            "flow: hello\nendpoint: /http/hello\nsteps:\n"
            "  - reply:\n      body: hi ${header.SapAuthenticatedUserName}\n"
        )
        deadline = time.monotonic() + 10
        while httpx.post(url, auth=user).status_code == 404 and time.monotonic() < deadline:
            time.sleep(0.2)
        r = httpx.post(url, auth=user)
        assert r.status_code == 200 and r.text == f"hi {user[0]}"
        (flows / "broken.yaml").write_text(
            "flow: broken\nendpoint: /http/broken\nsteps:\n  - nonsense: 1\n"
        )
        deadline = time.monotonic() + 10
        while "broken.yaml" not in srv.log() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "broken.yaml" in srv.log()
        assert httpx.post(url, auth=user).status_code == 200
    finally:
        stop_server(srv)


SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"


def envelope(ns: str, payload: str) -> bytes:
    return f'<s:Envelope xmlns:s="{ns}"><s:Header/><s:Body>{payload}</s:Body></s:Envelope>'.encode()


def test_cxf_endpoint_speaks_soap(scenario: Scenario) -> None:
    url = scenario.server.url + "/cxf/receiver_1"
    creds = ("soap_user_" + uuid.uuid4().hex[:6], "pw-soap")
    scenario.server.add_user(*creds, "receiver_1.send")
    payload = "<Message><Sender>Sender_SOAP</Sender></Message>"
    r = httpx.post(
        url, content=envelope(SOAP11, payload), auth=creds, headers={"Content-Type": "text/xml"}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/xml")
    greeting = "<Content>Receiver_1 greets Sender_SOAP</Content>"
    expected = f'<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body>{greeting}</soap:Body>'
    assert r.text == expected + "</soap:Envelope>"
    r12 = httpx.post(
        url,
        content=envelope(SOAP12, payload),
        auth=creds,
        headers={"Content-Type": "application/soap+xml"},
    )
    assert r12.status_code == 200 and r12.headers["content-type"].startswith("application/soap+xml")
    fault = httpx.post(
        url,
        content=envelope(SOAP11, "<Message/>"),
        auth=creds,
        headers={"Content-Type": "text/xml"},
    )
    assert fault.status_code == 500 and "<faultcode>soap:Client</faultcode>" in fault.text
    empty = httpx.post(
        url, content=envelope(SOAP11, ""), auth=creds, headers={"Content-Type": "text/xml"}
    )
    assert empty.status_code == 400
    plain = httpx.post(
        url, content=payload.encode(), auth=creds, headers={"Content-Type": "text/xml"}
    )
    assert plain.text == "<Content>Receiver_1 greets Sender_SOAP</Content>"


def test_every_answered_message_can_be_read_at_once(scenario: Scenario) -> None:
    """The log writes behind; reading it through the API first writes what waits."""
    guids = [
        post(scenario, message("Receiver_1"), auth=scenario.basic).headers[
            "sap_messageprocessinglogid"
        ]
        for _ in range(5)
    ]
    with Api(scenario.server) as api:
        listed = api.get(
            "MessageProcessingLogs",
            params={"$filter": "Status eq 'COMPLETED'", "$orderby": "LogStart desc", "$top": 50},
        ).json()["d"]["results"]
        assert set(guids) <= {e["MessageGuid"] for e in listed}


def test_message_guids_list_in_the_order_the_messages_came(scenario: Scenario) -> None:
    """MessageGuids sort by time, in SQLite's byte order and PostgreSQL's collation alike."""
    guids = []
    for _ in range(4):
        answer = post(scenario, message("Receiver_1"), auth=scenario.basic)
        guids.append(answer.headers["sap_messageprocessinglogid"])
        time.sleep(0.002)  # the time part counts milliseconds
    with Api(scenario.server) as api:
        mine = " or ".join(f"MessageGuid eq '{guid}'" for guid in guids)
        listed = api.get(
            "MessageProcessingLogs", params={"$filter": mine, "$orderby": "MessageGuid desc"}
        ).json()["d"]["results"]
    assert [e["MessageGuid"] for e in listed] == guids[::-1]


def test_kept_alive_sender_feels_account_changes_at_once(scenario: Scenario) -> None:
    """A sender's login is remembered between messages, yet a password or role change
    made with the CLI (another process) counts from the very next message."""
    srv = scenario.server
    name, first = "kept_" + uuid.uuid4().hex[:6], "first-pw"
    srv.add_user(name, first)
    with Api(srv) as api:
        assert (
            api.post("AuthorizedUsers", json={"User": name, "Pid": "Sender_KEPT"}).status_code
            == 201
        )
    with httpx.Client(base_url=srv.url, headers={"Content-Type": "text/xml"}, timeout=30) as client:
        for _ in range(3):
            r = client.post(SEND, content=message("Receiver_1"), auth=(name, first))
            assert r.text == "<Content>Receiver_1 greets Sender_KEPT</Content>"
        changed = srv.cli("users", "set-password", name, "--password-stdin", stdin="second-pw\n")
        assert changed.returncode == 0, changed.stderr
        assert (
            client.post(SEND, content=message("Receiver_1"), auth=(name, first)).status_code == 401
        )
        r = client.post(SEND, content=message("Receiver_1"), auth=(name, "second-pw"))
        assert r.status_code == 200, r.text
        # the flow's role comes from the authorised user entry; a store role is not needed,
        # but a removed account is no sender at all
        assert srv.cli("users", "remove", name).returncode == 0
        assert (
            client.post(SEND, content=message("Receiver_1"), auth=(name, "second-pw")).status_code
            == 401
        )


def test_many_connections_logging_in_at_once_all_get_through(scenario: Scenario) -> None:
    """The first messages of a sender that opens many connections at once share one
    password check: none of them is refused or waits for the others' argon2 runs."""
    import concurrent.futures

    srv = scenario.server
    name, password = "burst_" + uuid.uuid4().hex[:6], secrets.token_urlsafe(10)
    srv.add_user(name, password)
    with Api(srv) as api:
        assert (
            api.post("AuthorizedUsers", json={"User": name, "Pid": "Sender_BURST"}).status_code
            == 201
        )

    def send(_: int) -> httpx.Response:
        return post(scenario, message("Receiver_2"), auth=(name, password))

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, range(16)))
    assert [r.status_code for r in answers] == [200] * 16
    assert {r.text for r in answers} == {"<Content>Receiver_2 greets Sender_BURST</Content>"}
