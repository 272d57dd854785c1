"""The UI's export button and import page: a zip out, a plan per partner, one transaction."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from html import unescape
from pathlib import Path

from ..conftest import Api, Server
from ..ui.conftest import csrf_of, sign_in
from .conftest import content, fill


def _names(data: bytes) -> list[str]:
    return sorted(zipfile.ZipFile(io.BytesIO(data)).namelist())


def _without_credentials(data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            if not info.filename.endswith("UserCredentials.yaml"):
                target.writestr(info, source.read(info))
    return out.getvalue()


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden {name}"
    return unescape(found.group(1))


def test_export_then_import_through_the_ui(
    servers: Callable[..., Server], pki: Path, tmp_path: Path
) -> None:
    source = servers()
    with Api(source) as api:
        fill(api, pki)
        wanted = content(api)
    with sign_in(source, *source.admin) as ui:
        listing = ui.get("/ui/partners").text
        assert 'name="pid" value="Receiver_2"' in listing and "/ui/export" in listing
        every = ui.get("/ui/export")
        assert every.status_code == 200
        assert every.headers["content-type"] == "application/zip"
        assert "attachment" in every.headers["content-disposition"]
        names = _names(every.content)
        assert "partner-directory/Receiver_1/Binary/bundle.zip" in names
        assert "partner-directory/_certificates.yaml" in names
        assert ui.get("/ui/export").content == every.content, "exports are deterministic"
        chosen = ui.get("/ui/export", params={"pid": ["Receiver_2", "Sender_B"]}).content
        assert {n.split("/")[1] for n in _names(chosen)} == {"Receiver_2", "Sender_B"}

    target = servers()
    with sign_in(target, *target.admin) as ui:
        form = ui.get("/ui/import")
        token = csrf_of(form.text)
        refused = ui.post(
            "/ui/import",
            data={"csrf": token, "mode": "replace"},
            files={"file": ("pd.zip", every.content, "application/zip")},
        )
        assert refused.status_code == 400
        assert "gives no password reference" in unescape(refused.text)

        upload = _without_credentials(every.content)
        planned = ui.post(
            "/ui/import",
            data={"csrf": token, "mode": "replace"},
            files={"file": ("pd.zip", upload, "application/zip")},
        )
        assert planned.status_code == 200, planned.text
        text = unescape(planned.text)
        assert '<h2 id="plan-1" class="mono">Receiver_1</h2>' in text
        assert "Create</strong>\n      StringParameters" in text
        assert "Certificates" in text
        with Api(target) as api:
            assert api.get("Partners").json()["d"]["results"] == [], "a plan changes nothing"
            # Something changes between the plan and the confirmation: nothing is applied.
            api.post("StringParameters", json={"Pid": "Receiver_2", "Id": "ADDRESS", "Value": "y"})
        confirm = {
            "csrf": token,
            "mode": "replace",
            "zip": _hidden(planned.text, "zip"),
            "digest": _hidden(planned.text, "digest"),
        }
        stale = ui.post("/ui/import", data=confirm)
        assert "changed since the plan was shown" in stale.text
        with Api(target) as api:
            assert len(api.get("StringParameters").json()["d"]["results"]) == 1
        confirm["digest"] = _hidden(stale.text, "digest")
        done = ui.post("/ui/import", data=confirm)
        assert done.status_code == 303
        assert "Imported:" in unescape(ui.get(done.headers["location"]).text)
    with Api(target) as api:
        got = content(api)
    wanted["UserCredentialParameters"] = []
    assert got == wanted


def _zip(entries: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_hostile_uploads_are_refused_and_change_nothing(servers: Callable[..., Server]) -> None:
    target = servers()
    hostile = {
        "not a zip": b"\x00\xffPK not really",
        "a path out of the folder": _zip(
            {"partner-directory/../../evil/String.properties": b"a=b"}
        ),
        "bytes that are not text": _zip(
            {"partner-directory/P1/String.properties": b"ADDRESS=\xff\xfe"}
        ),
        "a YAML tag that builds objects": _zip(
            {
                "partner-directory/P1/AuthorizedUsers.yaml": b"- !!python/object/apply:os.system"
                b" ['true']"
            }
        ),
        "YAML that is not a list": _zip({"partner-directory/P1/AuthorizedUsers.yaml": b"{{{{"}),
    }
    with sign_in(target, *target.admin) as ui:
        token = csrf_of(ui.get("/ui/import").text)
        for what, data in hostile.items():
            answer = ui.post(
                "/ui/import",
                data={"csrf": token, "mode": "replace"},
                files={"file": ("pd.zip", data, "application/zip")},
            )
            assert answer.status_code == 400, (what, answer.status_code, answer.text[:300])
    with Api(target) as api:
        assert api.get("Partners").json()["d"]["results"] == []
