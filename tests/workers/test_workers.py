"""``serve --workers 2``: two processes share the listeners and behave as one server.

Which worker answers is told by ``/health`` (header ``Partnergate-Worker``: 0 or 1); a kept-alive
connection stays with the worker that accepted it, so a test holds one client per worker.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import signal
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import httpx
import pytest

from ..conftest import Api, Server, free_port, start_server, stop_process, stop_server
from ..flows.test_sender_flow import EXAMPLES, SEND, message

ROLE = "workers.send"
PING = textwrap.dedent(
    """\
    flow: Ping {name}
    endpoint: /http/ping_{name}
    role: workers.send
    steps:
      - reply:
          body: AAAA
    """
)
SLOW = textwrap.dedent(
    """\
    flow: Slow
    endpoint: /http/slow
    role: workers.send
    steps:
      - script: {file: slow.py, time-limit: 30}
      - reply:
          body: slept
    """
)
SLOW_SCRIPT = "import time\n\n\ndef process(message, pd):\n    time.sleep(3)\n"


@dataclass
class Pair:
    server: Server
    flows: Path
    sender: tuple[str, str]
    ping: str
    """The endpoint of a flow that only replies, of this module alone."""
    scraper_url: str
    """The listener of its own for ``/metrics`` (``metrics_http``)."""


def workers_of(pid: int) -> list[int]:
    """The processes the supervisor has forked (its workers)."""
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def pinned(url: str, **kw: object) -> dict[int, httpx.Client]:
    """One kept-alive client per worker, found by opening connections until each answered."""
    found: dict[int, httpx.Client] = {}
    spare: list[httpx.Client] = []
    for _ in range(200):
        client = httpx.Client(base_url=url, timeout=30, **kw)  # type: ignore[arg-type]
        index = int(client.get("/health").headers["partnergate-worker"])
        if index in found:
            spare.append(client)
        else:
            found[index] = client
        if len(found) == 2:
            break
    for client in spare:
        client.close()
    assert sorted(found) == [0, 1], "the connections did not reach both workers"
    return found


def pinned_api(server: Server, worker: int) -> Api:
    for _ in range(200):
        api = Api(server)
        if api.get(server.url + "/health").headers["partnergate-worker"] == str(worker):
            return api
        api.close()
    raise AssertionError(f"no connection reached worker {worker}")


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("workers")
    flows = tmp / "flows"
    shutil.copytree(EXAMPLES, flows, ignore=shutil.ignore_patterns("*.md", "*.sh"))
    name = uuid.uuid4().hex[:8]
    (flows / "ping.yaml").write_text(PING.format(name=name))
    scraper_url = f"http://127.0.0.1:{free_port()}"
    env = {
        "PARTNERGATE_FLOWS": str(flows),
        "PARTNERGATE_WORKERS": "2",
        "PARTNERGATE_METRICS_HTTP": scraper_url.removeprefix("http://"),
    }
    server = start_server(tmp, store_url, env)
    try:
        sender = ("workers_sender", secrets.token_urlsafe(10))
        server.add_user(*sender, ROLE)
        receiver = secrets.token_urlsafe(10)
        server.add_user("workers_receiver", receiver, "receiver_1.send", "receiver_2.send")
        with Api(server) as api:
            api.delete("Partners('Workers_R')")
            api.delete("AuthorizedUsers('workers_sender')")
            assert api.post(
                "AuthorizedUsers", json={"User": sender[0], "Pid": "Sender_WORKERS"}
            ).is_success
            assert api.post(
                "StringParameters",
                json={"Pid": "Workers_R", "Id": "ADDRESS", "Value": f"{server.url}/cxf/receiver_2"},
            ).is_success
            assert api.post(
                "UserCredentialParameters",
                json={
                    "Pid": "Workers_R",
                    "Id": "USER",
                    "User": "workers_receiver",
                    "Password": receiver,
                },
            ).is_success
        yield Pair(server, flows, sender, f"/http/ping_{name}", scraper_url)
    finally:
        stop_server(server)


def test_two_workers_answer(pair: Pair) -> None:
    assert len(workers_of(pair.server.process.pid)) == 2
    clients = pinned(pair.server.url)
    for client in clients.values():
        client.close()


def test_an_address_changed_through_one_worker_is_used_by_the_other_at_once(pair: Pair) -> None:
    clients = pinned(pair.server.url, auth=pair.sender)
    apis = {n: pinned_api(pair.server, n) for n in (0, 1)}
    try:
        for writer, reader in ((0, 1), (1, 0), (0, 1)):
            for target in (1, 2):
                before = clients[reader].post(SEND, content=message("Workers_R"))
                assert before.status_code == 200, before.text  # the reader has the ADDRESS cached
                changed = apis[writer].put(
                    "StringParameters(Pid='Workers_R',Id='ADDRESS')",
                    json={"Value": f"{pair.server.url}/cxf/receiver_{target}"},
                )
                assert changed.status_code == 204, changed.text
                after = clients[reader].post(SEND, content=message("Workers_R"))
                assert after.text == f"<Content>Receiver_{target} greets Sender_WORKERS</Content>"
    finally:
        for client in [*clients.values(), *apis.values()]:
            client.close()


def test_a_partner_revoked_through_one_worker_is_refused_by_the_other_at_once(
    pair: Pair,
) -> None:
    clients = pinned(pair.server.url, auth=pair.sender)
    api = pinned_api(pair.server, 0)
    try:
        assert clients[1].post(SEND, content=message("Workers_R")).status_code == 200
        assert api.delete("AuthorizedUsers('workers_sender')").status_code == 204
        # without the authorised user the sender has no partner: the flow's role is gone
        refused = clients[1].post(SEND, content=message("Workers_R"))
        assert refused.status_code == 403
        assert api.post(
            "AuthorizedUsers", json={"User": "workers_sender", "Pid": "Sender_WORKERS"}
        ).is_success
        assert clients[1].post(SEND, content=message("Workers_R")).status_code == 200
    finally:
        api.close()
        for client in clients.values():
            client.close()


def test_a_log_level_set_through_one_worker_applies_in_the_other_at_once(pair: Pair) -> None:
    clients = pinned(pair.server.url, auth=pair.sender)
    apis = {n: pinned_api(pair.server, n) for n in (0, 1)}
    flow = "Partner Directory sender"
    try:
        for writer, reader, level in ((0, 1, "TRACE"), (1, 0, "NONE"), (0, 1, "INFO")):
            assert apis[writer].put(f"FlowLogLevels('{flow}')", json={"LogLevel": level}).is_success
            sent = clients[reader].post(SEND, content=message("Workers_R"))
            assert sent.status_code == 200, sent.text
            guid = sent.headers["sap_messageprocessinglogid"]
            entry = apis[writer].get(f"MessageProcessingLogs('{guid}')").json()["d"]
            assert entry["LogLevel"] == level
    finally:
        apis[0].put(f"FlowLogLevels('{flow}')", json={"LogLevel": "INFO"})
        for client in [*clients.values(), *apis.values()]:
            client.close()


def test_one_scrape_counts_what_every_worker_did(pair: Pair) -> None:
    monitor = ("workers_monitor", secrets.token_urlsafe(10))
    pair.server.add_user(*monitor, "partnergate.Monitoring")
    scrapers = pinned(pair.server.url, auth=monitor)
    apis = {n: pinned_api(pair.server, n) for n in (0, 1)}
    wanted = 'partnergate_api_requests_total{entity_set="Partners",method="GET",status="200"}'

    def count(worker: int) -> float:
        text = scrapers[worker].get("/metrics").text
        found = [line for line in text.splitlines() if line.startswith(wanted)]
        return float(found[0].split()[-1]) if found else 0.0

    try:
        before = count(0)
        for _ in range(3):
            assert apis[1].get("Partners", params={"$top": "1"}).status_code == 200
        assert apis[0].get("Partners", params={"$top": "1"}).status_code == 200
        # no waiting: the scrape asks the other worker for what it holds
        assert count(0) == before + 4
        assert count(1) == before + 4
    finally:
        for client in [*scrapers.values(), *apis.values()]:
            client.close()


def test_every_worker_serves_the_scraper_s_listener(pair: Pair) -> None:
    """``metrics_http`` with workers: whichever worker the scraper's connection reaches
    answers for both, without credentials."""
    scrapers = pinned(pair.scraper_url)
    apis = {n: pinned_api(pair.server, n) for n in (0, 1)}
    wanted = 'partnergate_api_requests_total{entity_set="Partners",method="GET",status="200"}'

    def count(worker: int) -> float:
        answer = scrapers[worker].get("/metrics")
        assert answer.status_code == 200, answer.text
        found = [line for line in answer.text.splitlines() if line.startswith(wanted)]
        return float(found[0].split()[-1]) if found else 0.0

    try:
        before = count(0)
        assert apis[1].get("Partners", params={"$top": "1"}).status_code == 200
        assert apis[0].get("Partners", params={"$top": "1"}).status_code == 200
        assert count(0) == before + 2
        assert count(1) == before + 2
        assert scrapers[1].get("/api/v1/Partners", auth=pair.server.admin).status_code == 404
    finally:
        for client in [*scrapers.values(), *apis.values()]:
            client.close()


async def _send_all(url: str, auth: tuple[str, str], count: int, connections: int) -> list[int]:
    statuses: list[int] = []
    queue = iter(range(count))
    basic = {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()}

    async def worker(session: aiohttp.ClientSession) -> None:
        for _ in queue:
            async with session.post(url, data=b"<Message/>", headers=basic) as response:
                await response.read()
                statuses.append(response.status)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    return statuses


def test_ten_thousand_messages_make_ten_thousand_log_entries(pair: Pair) -> None:
    statuses = asyncio.run(_send_all(pair.server.url + pair.ping, pair.sender, 10_000, 16))
    assert statuses.count(200) == 10_000
    name = pair.ping.removeprefix("/http/ping_")
    with Api(pair.server) as api:
        counted = api.get(
            "MessageProcessingLogs/$count",
            params={"$filter": f"IntegrationFlowName eq 'Ping {name}'"},
        )
        assert counted.status_code == 200, counted.text
        assert int(counted.text) == 10_000
        completed = api.get(
            "MessageProcessingLogs/$count",
            params={"$filter": f"IntegrationFlowName eq 'Ping {name}' and Status eq 'COMPLETED'"},
        )
        assert int(completed.text) == 10_000


def test_sighup_reloads_the_flows_of_every_worker(pair: Pair) -> None:
    flow = pair.flows / "ping.yaml"
    clients = pinned(pair.server.url, auth=pair.sender)
    try:
        for client in clients.values():
            assert client.post(pair.ping).text == "AAAA"
        # same size and time: the folder watcher sees no change, only SIGHUP reloads
        stat = flow.stat()
        flow.write_text(flow.read_text().replace("AAAA", "BBBB"))
        os.utime(flow, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        time.sleep(1.5)
        assert [c.post(pair.ping).text for c in clients.values()] == ["AAAA", "AAAA"]
        os.kill(pair.server.process.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while [c.post(pair.ping).text for c in clients.values()] != ["BBBB", "BBBB"]:
            assert time.monotonic() < deadline, "a worker kept the old flow"
            time.sleep(0.1)
    finally:
        flow.write_text(flow.read_text().replace("BBBB", "AAAA"))
        os.kill(pair.server.process.pid, signal.SIGHUP)
        for client in clients.values():
            client.close()


def test_a_worker_that_dies_is_replaced(pair: Pair) -> None:
    supervisor = pair.server.process.pid
    before = workers_of(supervisor)
    os.kill(before[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        now = workers_of(supervisor)
        if len(now) == 2 and before[0] not in now:
            break
        assert time.monotonic() < deadline, f"workers now: {now}"
        time.sleep(0.2)
    deadline = time.monotonic() + 60
    while True:  # the new worker starts its app, then answers
        try:
            clients = pinned(pair.server.url)
            break
        except AssertionError:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    for client in clients.values():
        client.close()


def test_sigterm_lets_a_message_in_flight_finish_and_exits_0(
    tmp_path_factory: pytest.TempPathFactory, store_url: str
) -> None:
    tmp = tmp_path_factory.mktemp("sigterm")
    flows = tmp / "flows"
    flows.mkdir()
    (flows / "slow.yaml").write_text(SLOW)
    (flows / "slow.py").write_text(SLOW_SCRIPT)
    server = start_server(
        tmp, store_url, {"PARTNERGATE_FLOWS": str(flows), "PARTNERGATE_WORKERS": "2"}
    )
    sender = ("slow_sender", secrets.token_urlsafe(10))
    try:
        server.add_user(*sender, ROLE)
        answers: list[httpx.Response] = []
        sending = threading.Thread(
            target=lambda: answers.append(
                httpx.post(server.url + "/http/slow", auth=sender, timeout=30)
            )
        )
        sending.start()
        time.sleep(1.5)  # the message is in its script now
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=30) == 0
        sending.join()
        assert answers and answers[0].status_code == 200 and answers[0].text == "slept"
        guid = answers[0].headers["SAP_MessageProcessingLogID"]
    finally:
        stop_process(server.process)
    (tmp / "again").mkdir()
    again = start_server(tmp / "again", store_url, {"PARTNERGATE_WORKERS": "2"})
    try:
        with Api(again) as api:
            entry = api.get(f"MessageProcessingLogs('{guid}')")
            assert entry.status_code == 200, entry.text
            assert entry.json()["d"]["Status"] == "COMPLETED"
    finally:
        stop_server(again)
