"""The server as a new user starts it: from an empty folder, defaults only.

No ``PARTNERGATE_*`` variable, the default SQLite file and the default (relative)
``data_dir`` in the working directory, flows in ``./flows`` named on the command line as
the README does. The one flag beyond the README's is ``--http`` with a free port, so that
the test never meets another server on 8080. One flow uses every step kind, an XSLT step
reading a ``pd:`` binary parameter included.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from partnergate.runtime.steps import STEP_KINDS

from ..conftest import ADMIN_ROLE, free_port, stop_process, wait_until_healthy

MAIN_FLOW = """\
flow: new user
endpoint: /http/newuser/main
steps:
  - authorize-partner:
      claimed: ${header.x-sender}
      set: property.PARTNER
  - set:
      property.ADDRESS: {string-parameter: {pid: "${property.PARTNER}", id: ADDRESS}}
      header.x-scratch: to be removed
  - remove: header.x-scratch
  - xslt:
      stylesheet: map.xsl
      params:
        partner: ${property.PARTNER}
  - script: mark.py
  - log-attachment: mapped
  - custom-header:
      Partner: ${property.PARTNER}
  - call:
      address: ${property.ADDRESS}
      credentials: pd:${property.PARTNER}:USER:UserCredential
  - body:
      content: <Done>${body}</Done>
      content-type: application/xml
  - reply:
      headers:
        x-scratch-left: "[${header.x-scratch}]"
"""
RECEIVER_FLOW = """\
flow: new user's receiver
endpoint: /http/newuser/receiver
role: newuser.receive
steps:
  - reply:
      content-type: application/xml
      body: <Received>${body}</Received>
"""
MAP_XSL = """\
<xsl:stylesheet version="2.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:param name="partner"/>
  <xsl:template match="/">
    <xsl:variable name="item" select="string(/Order/Item)"/>
    <Mapped partner="{$partner}" item="{$item}">
      <xsl:value-of select="document('pd:NEWP:CODES:Binary')/codes/code[@item = $item]"/>
    </Mapped>
  </xsl:template>
</xsl:stylesheet>
"""
MARK_PY = """\
def process(message, pd):
    users = pd.get_authorized_users(message.get_property("PARTNER"))
    body = message.get_body(str).replace("</Mapped>", f"<Users>{len(users)}</Users></Mapped>")
    message.set_body(body)
"""
CODES = b'<codes><code item="tea">T-100</code><code item="books">B-200</code></codes>'


@dataclass
class NewUser:
    url: str
    cwd: Path
    env: dict[str, str]
    admin: tuple[str, str]
    log: Path


def _cli(cwd: Path, env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "partnergate", *args],
        cwd=cwd,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def new_user(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NewUser]:
    cwd = tmp_path_factory.mktemp("fresh")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARTNERGATE_")}
    flows = cwd / "flows"
    flows.mkdir()
    (flows / "main.yaml").write_text(MAIN_FLOW)
    (flows / "receiver.yaml").write_text(RECEIVER_FLOW)
    (flows / "map.xsl").write_text(MAP_XSL)
    (flows / "mark.py").write_text(MARK_PY)
    admin = ("admin", secrets.token_urlsafe(12))
    _cli(cwd, env, "users", "add", admin[0], "--role", ADMIN_ROLE, "--password-stdin",
         stdin=admin[1] + "\n")  # fmt: skip
    port = free_port()
    log = cwd.parent / f"{cwd.name}-server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "partnergate", "serve", "--flows", "flows",
             "--http", f"127.0.0.1:{port}"],
            cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(url, process, log)
        yield NewUser(url, cwd, env, admin, log)
    finally:
        stop_process(process)


def test_defaults_live_in_the_working_directory(new_user: NewUser) -> None:
    assert (new_user.cwd / "partnergate.db").is_file()
    assert (new_user.cwd / ".partnergate" / "credentials.key").is_file()


def test_a_flow_with_every_step_kind(new_user: NewUser) -> None:
    used = {
        line.strip().removeprefix("- ").split(":")[0]
        for line in MAIN_FLOW.splitlines()
        if line.startswith("  - ")
    }
    assert used == set(STEP_KINDS), "the flow must use every step kind there is"

    sender = ("newuser_sender", secrets.token_urlsafe(10))
    receiver = ("newuser_receiver", secrets.token_urlsafe(10))
    cwd, env = new_user.cwd, new_user.env
    _cli(cwd, env, "users", "add", sender[0], "--role", "ESBMessaging.send",
         "--password-stdin", stdin=sender[1] + "\n")  # fmt: skip
    _cli(cwd, env, "users", "add", receiver[0], "--role", "newuser.receive",
         "--password-stdin", stdin=receiver[1] + "\n")  # fmt: skip
    with httpx.Client(base_url=new_user.url + "/api/v1/", auth=new_user.admin, timeout=60) as api:
        token = api.get("", headers={"X-CSRF-Token": "Fetch"}).headers["x-csrf-token"]
        api.headers.update({"X-CSRF-Token": token, "Accept": "application/json"})
        for entity_set, body in (
            ("AuthorizedUsers", {"User": sender[0], "Pid": "NEWP"}),
            (
                "StringParameters",
                {"Pid": "NEWP", "Id": "ADDRESS", "Value": new_user.url + "/http/newuser/receiver"},
            ),
            (
                "UserCredentialParameters",
                {"Pid": "NEWP", "Id": "USER", "User": receiver[0], "Password": receiver[1]},
            ),
            (
                "BinaryParameters",
                {
                    "Pid": "NEWP",
                    "Id": "CODES",
                    "ContentType": "xml",
                    "Value": base64.b64encode(CODES).decode(),
                },
            ),
        ):
            created = api.post(entity_set, json=body)
            assert created.status_code == 201, (entity_set, created.text)

        r = httpx.post(
            new_user.url + "/http/newuser/main",
            content=b"<Order><Item>tea</Item></Order>",
            headers={"Content-Type": "application/xml", "x-sender": "NEWP"},
            auth=sender,
            timeout=60,
        )
        assert r.status_code == 200, (r.text, new_user.log.read_text()[-3000:])
        assert r.headers["x-scratch-left"] == "[]"
        body = r.text
        assert body.startswith("<Done><Received>") and body.endswith("</Received></Done>"), body
        assert 'partner="NEWP"' in body and 'item="tea"' in body
        assert "T-100" in body  # read from the pd: binary parameter by document()
        assert "<Users>1</Users>" in body  # the script asked the Partner Directory

        guid = r.headers["sap_messageprocessinglogid"]
        attachments = api.get(f"MessageProcessingLogs('{guid}')/Attachments")
        assert [a["Name"] for a in attachments.json()["d"]["results"]] == ["mapped"]
        custom = api.get(f"MessageProcessingLogs('{guid}')/CustomHeaderProperties")
        found = [(p["Name"], p["Value"]) for p in custom.json()["d"]["results"]]
        assert found == [("Partner", "NEWP")]

        wrong = httpx.post(
            new_user.url + "/http/newuser/main",
            content=b"<Order><Item>tea</Item></Order>",
            headers={"Content-Type": "application/xml", "x-sender": "SOMEONE_ELSE"},
            auth=sender,
            timeout=60,
        )
        assert wrong.status_code == 403
