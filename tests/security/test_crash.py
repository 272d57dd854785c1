"""``kill -9`` at the worst moments: during a large ``$batch``, and while the message
processing log is being written behind the messages.

What must hold after a restart on the same store (docs/compatibility.md, "message
processing log timing"): the store opens and is consistent; a change set is all or
nothing; the log holds no entry twice, and every message answered more than the flush
interval before the kill is listed, finished (a crash loses at most the entries of the
last interval). The interval is 100 ms; the test allows :data:`LOG_GRACE` beyond it, for
a write that is under way on a busy machine, and reports the largest age it saw lost.
"""

from __future__ import annotations

import json
import secrets
import signal
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from ..conftest import STORE, Api, Server, start_server

SEED_FLOWS = Path(__file__).resolve().parents[2] / "examples" / "partner-directory"
CREATES = 500
FLUSH_INTERVAL = 0.1
LOG_GRACE = 1.0
"""Seconds beyond the flush interval an answered message may still be lost to a kill."""


def kill(server: Server) -> None:
    server.process.send_signal(signal.SIGKILL)
    server.process.wait(timeout=30)


def check_sqlite(store: str) -> None:
    if STORE == "sqlite":
        path = store.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def change_set_of_creates(pid: str, count: int) -> bytes:
    lines = ["--batch", "Content-Type: multipart/mixed; boundary=changeset", ""]
    for n in range(count):
        body = json.dumps({"Pid": pid, "Id": f"P{n:04d}", "Value": "v" * 100})
        lines += [
            "--changeset",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            "",
            "POST StringParameters HTTP/1.1",
            "Content-Type: application/json",
            "",
            body,
        ]
    lines += ["--changeset--", "--batch--", ""]
    return "\r\n".join(lines).encode()


def stored(api: Api, pid: str) -> int:
    r = api.get(f"StringParameters/$count?$filter=Pid eq '{pid}'")
    assert r.status_code == 200, r.text
    return int(r.text)


def test_kill_during_a_large_batch(tmp_path: Path, own_store: str) -> None:
    """SIGKILL at several moments of a change set of 500 creates: after a restart either
    all 500 are stored or none."""
    server = start_server(tmp_path, own_store)
    try:
        with Api(server) as api:
            started = time.monotonic()
            r = api.post(
                "$batch",
                content=change_set_of_creates("CRASH_TIMING", CREATES),
                headers={"Content-Type": "multipart/mixed; boundary=batch"},
            )
            took = time.monotonic() - started
            assert r.status_code == 202 and r.text.count("201 Created") == CREATES, r.text[:500]
        killed_midway = 0
        for fraction in (0.2, 0.4, 0.6, 0.8, 0.95):
            pid = f"CRASH_{uuid.uuid4().hex[:8]}"
            answered: list[httpx.Response] = []
            with Api(server) as api:
                sender = threading.Thread(
                    target=_send_batch, args=(api, pid, answered), daemon=True
                )
                sender.start()
                time.sleep(took * fraction)
                kill(server)
                sender.join(timeout=30)
            check_sqlite(own_store)
            server = start_server(tmp_path, own_store)
            with Api(server) as api:
                count = stored(api, pid)
            assert count in (0, CREATES), f"killed at {fraction:.0%}: {count} of {CREATES}"
            if not answered:
                killed_midway += 1
        assert killed_midway, "every batch was answered before the kill: nothing was tested"
    finally:
        kill(server)


def _send_batch(api: Api, pid: str, answered: list[httpx.Response]) -> None:
    try:
        answered.append(
            api.post(
                "$batch",
                content=change_set_of_creates(pid, CREATES),
                headers={"Content-Type": "multipart/mixed; boundary=batch"},
            )
        )
    except httpx.TransportError:
        pass


@dataclass
class Sent:
    """What the senders saw: each answered message's guid and when its answer came."""

    answers: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


def _sender(url: str, auth: tuple[str, str], sent: Sent) -> None:
    body = b"<Message><Receiver>Receiver_1</Receiver></Message>"
    with httpx.Client(auth=auth, timeout=30) as client:
        while not sent.stop.is_set():
            try:
                r = client.post(url, content=body, headers={"Content-Type": "text/xml"})
            except httpx.TransportError:
                return
            answered_at = time.monotonic()
            assert r.status_code == 200, r.text
            with sent.lock:
                sent.answers[r.headers["sap_messageprocessinglogid"]] = answered_at


def _set_up_scenario(server: Server, sender: tuple[str, str]) -> None:
    server.add_user(*sender)
    receiver = ("user_receiver_1", secrets.token_urlsafe(10))
    server.add_user(*receiver, "receiver_1.send")
    with Api(server) as api:
        for set_name, body in (
            ("StringParameters", {"Id": "ADDRESS", "Value": f"{server.url}/cxf/receiver_1"}),
            (
                "UserCredentialParameters",
                {"Id": "USER", "User": receiver[0], "Password": receiver[1]},
            ),
        ):
            assert api.post(set_name, json={"Pid": "Receiver_1", **body}).status_code == 201
        r = api.post("AuthorizedUsers", json={"User": sender[0], "Pid": "Sender_BASIC"})
        assert r.status_code == 201, r.text


def logged(api: Api) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    url: str | None = "MessageProcessingLogs?$select=MessageGuid,Status,LogEnd&$format=json"
    while url:
        r = api.get(url)
        assert r.status_code == 200, r.text
        d = r.json()["d"]
        rows += d["results"]
        url = d.get("__next")
    return rows


def test_kill_during_message_log_writes(tmp_path: Path, own_store: str) -> None:
    """Four senders send without pause; SIGKILL while they do. After a restart: the store
    opens, no entry is listed twice, and every message answered more than the flush
    interval (plus :data:`LOG_GRACE`) before the kill is listed as completed."""
    flows = {"PARTNERGATE_FLOWS": str(SEED_FLOWS)}
    server = start_server(tmp_path, own_store, flows)
    sender = ("user_for_sender_basic", secrets.token_urlsafe(10))
    try:
        _set_up_scenario(server, sender)
        sent = Sent()
        threads = [
            threading.Thread(
                target=_sender, args=(server.url + "/http/partner_directory", sender, sent)
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while len(sent.answers) < 400 and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_at = time.monotonic()
        kill(server)
        sent.stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert len(sent.answers) >= 400, f"only {len(sent.answers)} messages answered in 60 s"
        check_sqlite(own_store)
        server = start_server(tmp_path, own_store, flows)
        with Api(server) as api:
            rows = logged(api)
        guids = [str(row["MessageGuid"]) for row in rows]
        assert len(guids) == len(set(guids)), "an entry is listed twice"
        by_guid = {str(row["MessageGuid"]): row for row in rows}
        lost = {g: killed_at - t for g, t in sent.answers.items() if g not in by_guid}
        unfinished = {
            g: killed_at - t
            for g, t in sent.answers.items()
            if g in by_guid and by_guid[g]["Status"] != "COMPLETED"
        }
        oldest_lost = max([*lost.values(), *unfinished.values()], default=0.0)
        print(
            f"{len(sent.answers)} answered, {len(lost)} not listed, {len(unfinished)} listed "
            f"unfinished; the oldest of those answered {oldest_lost * 1000:.0f} ms before the kill"
        )
        assert oldest_lost <= FLUSH_INTERVAL + LOG_GRACE, (
            f"a message answered {oldest_lost:.3f} s before the kill is not in the log "
            f"({len(lost)} missing, {len(unfinished)} unfinished)"
        )
        for guid in by_guid.keys() & sent.answers.keys():
            if by_guid[guid]["Status"] == "COMPLETED":
                assert by_guid[guid]["LogEnd"], f"{guid} completed without an end"
    finally:
        kill(server)
