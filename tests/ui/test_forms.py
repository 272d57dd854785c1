"""Form details over plain HTTP: the store's rules answer, next to the field they name."""

from __future__ import annotations

import base64
from html import unescape

import httpx

from ..conftest import Api
from .conftest import csrf_of


def post(ui: httpx.Client, url: str, data: dict[str, str], **kw: object) -> httpx.Response:
    """Submit a form the way a browser does: with the token of the page that shows it."""
    token = csrf_of(ui.get(url).text)
    return ui.post(url, data={**data, "csrf": token}, **kw)  # type: ignore[arg-type]


def partner(api: Api, pid: str) -> None:
    api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"}).raise_for_status()


def test_a_binary_value_over_the_limit_is_refused_next_to_it(
    ui: httpx.Client, api: Api, pid: str
) -> None:
    partner(api, pid)
    big = b"<a>" + b"x" * 1_572_864 + b"</a>"
    r = post(
        ui,
        f"/ui/partners/{pid}/binary-parameters/new",
        {"Id": "BIG", "ContentType": "auto"},
        files={"File": ("big.xml", big, "application/xml")},
    )
    assert r.status_code == 400
    assert 'id="error-Value"' in r.text
    assert f"Content is {len(big)} bytes; at most 1572864 are allowed" in unescape(r.text)
    assert 'name="Kept"' not in r.text  # too large to keep for the next try
    assert 'value="BIG"' in r.text
    assert api.get(f"BinaryParameters(Pid='{pid}',Id='BIG')").status_code == 404


def test_the_content_type_comes_from_the_file_name_or_is_asked_for(
    ui: httpx.Client, api: Api, pid: str
) -> None:
    partner(api, pid)
    url = f"/ui/partners/{pid}/binary-parameters/new"
    r = post(ui, url, {"Id": "X", "ContentType": "auto"}, files={"File": ("x.bin", b"1")})
    assert r.status_code == 400
    assert 'id="error-ContentType"' in r.text
    assert "it cannot be told from the file name 'x.bin'" in unescape(r.text)
    r = post(ui, url, {"Id": "J", "ContentType": "auto"}, files={"File": ("c.json", b"{}")})
    assert r.status_code == 303
    assert api.get(f"BinaryParameters(Pid='{pid}',Id='J')").json()["d"]["ContentType"] == "json"


def test_pasted_text_is_stored_in_the_chosen_encoding(ui: httpx.Client, api: Api, pid: str) -> None:
    partner(api, pid)
    r = post(
        ui,
        f"/ui/partners/{pid}/binary-parameters/new",
        {"Id": "GREETING", "ContentType": "text", "Encoding": "ISO-8859-1", "Text": "Grüße"},
    )
    assert r.status_code == 303
    stored = api.get(f"BinaryParameters(Pid='{pid}',Id='GREETING')").json()["d"]
    assert stored["ContentType"] == "text;encoding=ISO-8859-1"
    assert base64.b64decode(stored["Value"]) == "Grüße".encode("iso-8859-1")
    page = ui.get(f"/ui/partners/{pid}/binary-parameters/edit", params={"id": "GREETING"})
    assert "Grüße" in page.text


def test_a_crt_parameter_must_hold_a_certificate(ui: httpx.Client, api: Api, pid: str) -> None:
    partner(api, pid)
    r = post(
        ui,
        f"/ui/partners/{pid}/binary-parameters/new",
        {"Id": "CERT", "ContentType": "crt", "Text": "not a certificate"},
    )
    assert r.status_code == 400
    assert 'id="error-Value"' in r.text
    assert "must be an X.509 certificate" in r.text


def test_a_rule_without_a_field_on_the_form_is_shown_above_it(
    ui: httpx.Client, api: Api, pid: str
) -> None:
    body = {"Pid": pid, "Agency": "GS1", "Scheme": "GLN", "Id": pid}
    api.post("AlternativePartners", json=body).raise_for_status()
    r = post(
        ui,
        f"/ui/partners/{pid}/alternative-partners/new",
        {"Agency": "GS1", "Scheme": "GLN", "Id": pid + "2"},
    )
    assert r.status_code == 400
    summary = r.text.split('class="error-summary"', 1)[1].split("</div>", 1)[0]
    assert "(Agency, Scheme, Pid) must be unique" in summary
    assert f'value="{pid}2"' in r.text


def test_moving_to_a_bad_partner_id_is_refused_next_to_it(
    ui: httpx.Client, api: Api, pid: str
) -> None:
    api.post("AuthorizedUsers", json={"Pid": pid, "User": f"m_{pid}"}).raise_for_status()
    url = f"/ui/partners/{pid}/authorized-users/edit?user=m_{pid.lower()}"
    r = post(ui, url, {"Pid": "no spaces"})
    assert r.status_code == 400
    assert 'id="error-Pid"' in r.text
    assert "contains characters that are not allowed" in r.text
    assert api.get(f"AuthorizedUsers('m_{pid.lower()}')").json()["d"]["Pid"] == pid


def test_deleting_the_last_entity_says_the_partner_goes(
    ui: httpx.Client, api: Api, pid: str
) -> None:
    partner(api, pid)
    url = f"/ui/partners/{pid}/string-parameters/delete?id=A"
    confirm = ui.get(url)
    assert "This is the last entity of" in confirm.text
    r = post(ui, url, {})
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/partners"
    listing = ui.get("/ui/partners")
    assert "It was the last part of partner" in listing.text
    assert ui.get(f"/ui/partners/{pid}").status_code == 404


def test_adding_to_an_existing_partner_from_the_new_partner_page_is_refused(
    ui: httpx.Client, api: Api, pid: str
) -> None:
    partner(api, pid)
    r = post(ui, "/ui/new-partner", {"kind": "authorized-users", "Pid": pid, "User": "x" + pid})
    assert r.status_code == 400
    assert 'id="error-Pid"' in r.text
    assert "already exists; add to it on its own page" in r.text
