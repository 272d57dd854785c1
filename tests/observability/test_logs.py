"""``--log-format json``: every line of a real server's log is one JSON object, with the
message ID, flow and partner where known, and the reason words of refusals and failures."""

from __future__ import annotations

import base64
import json
import time

import httpx

from ..conftest import Api
from .conftest import Observed


def records(observed: Observed) -> list[dict[str, object]]:
    time.sleep(1.0)  # the access log is flushed twice a second
    lines = observed.server.log().splitlines()
    assert lines
    parsed = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"not JSON: {line!r}") from None
        assert isinstance(entry, dict), line
        for key in ("time", "level", "logger", "message"):
            assert key in entry, line
        assert str(entry["time"]).endswith("Z")
        parsed.append(entry)
    return parsed


def test_every_line_is_json_with_message_context_and_reasons(observed: Observed) -> None:
    ok = observed.send("Receiver_1")
    assert ok.status_code == 200
    ok_id = ok.headers["sap_messageprocessinglogid"]
    failed = observed.send("Receiver_9")  # no ADDRESS
    assert failed.status_code >= 400
    failed_id = failed.headers["sap_messageprocessinglogid"]
    assert observed.send("Receiver_1", auth=(observed.basic[0], "not-it")).status_code == 401
    with Api(observed.server) as api:
        assert api.get("Partners").status_code == 200
    assert httpx.get(observed.server.api + "/Partners", auth=observed.basic).status_code == 403

    entries = records(observed)
    # a failed message: why, and which message, flow and partner
    failure = [e for e in entries if e.get("message_id") == failed_id and e["level"] == "INFO"]
    assert any("message failed" in str(e["message"]) for e in failure), failure
    assert all(e["flow"] == "Partner Directory sender" for e in failure)
    assert all(e["partner"] == "Sender_OBS" for e in failure)
    # refusals keep their reason words
    messages = [str(e["message"]) for e in entries]
    assert any(f"wrong secret for user '{observed.basic[0]}'" in m for m in messages)
    assert any("lacks role" in m for m in messages)
    # the access log: one line per request, a message's with its ID
    access = [e for e in entries if e["logger"] == "partnergate.access"]
    sent = [e for e in access if e.get("message_id") == ok_id]
    assert len(sent) == 1 and sent[0]["status"] == 200 and sent[0]["method"] == "POST"
    assert any(e["path"] == "/api/v1/Partners" and e["status"] == 403 for e in access)
    # uvicorn's own lines are JSON too
    assert any(e["logger"].startswith("uvicorn") for e in entries)
    # no secret: neither the sender's password nor the Authorization header
    text = observed.server.log()
    assert observed.basic[1] not in text
    assert observed.monitor[1] not in text
    header = base64.b64encode(f"{observed.basic[0]}:{observed.basic[1]}".encode()).decode()
    assert header not in text
