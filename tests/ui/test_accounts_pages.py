"""Users and OAuth clients in the UI: add, set roles, reset the secret once, remove."""

from __future__ import annotations

import base64
import re
import uuid
from html import unescape
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import Browser, expect

from ..conftest import Api, Server
from .conftest import SIZES, admin_tab, csrf_of, shot, sign_in, unfold_menu
from .test_certificates_browser import make_certificate
from .test_search_everywhere import assert_fits

ROLE = "AuthGroup_TenantPartnerDirectoryConfigurator"
SECRET = re.compile(r'<output class="secret-once" id="secret"[^>]*>([^<]+)</output>')


def _name(tag: str) -> str:
    return f"{tag}_{uuid.uuid4().hex[:6]}"


def add(ui: httpx.Client, kind: str, name: str, *roles: str, other: str = "") -> httpx.Response:
    csrf = csrf_of(ui.get("/ui/accounts").text)
    data = {"csrf": csrf, "name": name, "other_roles": other}
    data.update({f"role-{r}": "on" for r in roles})
    return ui.post(f"/ui/new-account/{kind}", data=data)


def test_a_new_user_signs_in_with_the_password_shown_once(ui: httpx.Client, server: Server) -> None:
    name = _name("ops")
    made = add(ui, "users", name, ROLE)
    assert made.status_code == 200
    password = SECRET.search(made.text).group(1)  # type: ignore[union-attr]
    assert "shown only this once" in made.text
    listing = ui.get("/ui/accounts").text
    assert name in listing and password not in listing
    assert password not in server.log()
    with sign_in(server, name, password) as other:
        assert other.get("/ui/accounts").status_code == 200


def test_reset_ends_the_old_password_and_roles_change(ui: httpx.Client, server: Server) -> None:
    name = _name("reset")
    first = SECRET.search(add(ui, "users", name, ROLE).text).group(1)  # type: ignore[union-attr]
    page = ui.get(f"/ui/accounts/users/{name}")
    reset = ui.post(
        f"/ui/accounts/users/{name}", data={"csrf": csrf_of(page.text), "action": "reset"}
    )
    second = SECRET.search(reset.text).group(1)  # type: ignore[union-attr]
    assert second != first
    assert httpx.get(server.api + "/", auth=(name, first)).status_code == 401
    assert httpx.get(server.api + "/", auth=(name, second)).status_code == 200
    roles = ui.post(
        f"/ui/accounts/users/{name}",
        data={"csrf": csrf_of(page.text), "action": "roles", "other_roles": "custom.role"},
    )
    assert roles.status_code == 303
    assert httpx.get(server.api + "/", auth=(name, second)).status_code == 403


def test_an_oauth_client_gets_a_token_with_its_secret(ui: httpx.Client, server: Server) -> None:
    client_id = _name("client")
    made = add(ui, "clients", client_id, ROLE)
    secret = SECRET.search(made.text).group(1)  # type: ignore[union-attr]
    token = httpx.post(
        server.url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    assert token.status_code == 200, token.text
    page = ui.get(f"/ui/accounts/clients/{client_id}")
    gone = ui.post(
        f"/ui/accounts/clients/{client_id}",
        data={"csrf": csrf_of(page.text), "action": "remove", "confirm": client_id},
    )
    assert gone.status_code == 303
    again = httpx.post(
        server.url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
    )
    assert again.status_code == 401


def test_an_admin_cannot_lock_themself_out(ui: httpx.Client, server: Server) -> None:
    me = server.admin[0]
    page = ui.get(f"/ui/accounts/users/{me}")
    csrf = csrf_of(page.text)
    removed = ui.post(
        f"/ui/accounts/users/{me}", data={"csrf": csrf, "action": "remove", "confirm": me}
    )
    assert removed.status_code == 409
    demoted = ui.post(f"/ui/accounts/users/{me}", data={"csrf": csrf, "action": "roles"})
    assert demoted.status_code == 409
    assert ui.get("/ui/accounts").status_code == 200


@pytest.mark.parametrize(
    ("name", "message"),
    [("", "without spaces"), ("has space", "without spaces")],
)
def test_a_bad_name_is_refused_and_nothing_added(ui: httpx.Client, name: str, message: str) -> None:
    refused = add(ui, "users", name, ROLE)
    assert refused.status_code == 400
    assert message in unescape(refused.text)


def test_a_duplicate_is_refused(ui: httpx.Client) -> None:
    name = _name("twice")
    assert add(ui, "users", name, ROLE).status_code == 200
    again = add(ui, "users", name, ROLE)
    assert again.status_code == 400
    assert f"user '{name}' already exists" in unescape(again.text)


def test_someone_without_the_role_gets_no_accounts_page(server: Server) -> None:
    name, password = _name("sender"), "pw-" + uuid.uuid4().hex
    server.add_user(name, password, "ESBMessaging.send")
    with httpx.Client(base_url=server.url) as client:
        form = client.get("/ui/signin")
        client.post(
            "/ui/signin",
            data={"name": name, "password": password, "csrf": csrf_of(form.text), "next": ""},
        )
        assert client.get("/ui/accounts").status_code == 403


@pytest.mark.parametrize("size", SIZES)
def test_add_a_user_in_the_browser(browser: Browser, server: Server, size: str) -> None:
    name = _name(f"b{size}")
    with admin_tab(browser, server, size) as tab:
        unfold_menu(tab)
        tab.get_by_role("link", name="Users", exact=True).click()
        expect(tab.get_by_role("heading", name="Users and OAuth clients")).to_be_visible()
        assert_fits(tab)
        shot(tab, f"accounts-{size}")
        tab.get_by_text("Add a user").click()
        tab.get_by_label("User name").fill(name)
        tab.get_by_role("button", name="Add user").click()
        expect(tab.locator(".flash")).to_contain_text("shown only this once")
        expect(tab.locator("#secret")).not_to_be_empty()
        assert_fits(tab)
        tab.get_by_role("link", name="Done").click()
        tab.get_by_role("link", name=f"Manage {name}").click()
        expect(tab.get_by_role("heading", name="Roles")).to_be_visible()
        assert_fits(tab)
        shot(tab, f"account-{size}")
        tab.get_by_label(f"Type {name} to remove it").fill(name)
        tab.get_by_role("button", name="Remove user").click()
        expect(tab.locator(".flash")).to_contain_text(f"User '{name}' removed")


def test_pickers_offer_the_stores_names(ui: httpx.Client, api: Api) -> None:
    pid, user = "Pick_" + uuid.uuid4().hex[:6], _name("picked")
    assert api.post("AuthorizedUsers", json={"Pid": pid, "User": user}).status_code == 201
    assert user in ui.get("/ui/pickers/users").json()
    assert pid in ui.get("/ui/pickers/partners").json()
    assert ui.get("/ui/pickers/nothing").status_code == 404


def test_every_user_or_partner_field_offers_the_stores_names(
    browser: Browser, server: Server, api: Api
) -> None:
    """Wherever a form asks for a user name or a partner ID, the browser offers the names
    the store has: authorised users, certificates, rules, copies, moves, grid, documents."""
    # names that sort first: a picker offers the first 500, and the session's store has more
    pid, user = "000Pick_" + uuid.uuid4().hex[:6], _name("000offered")
    assert api.post("AuthorizedUsers", json={"Pid": pid, "User": user}).status_code == 201
    assert (
        api.post("StringParameters", json={"Pid": pid, "Id": "A", "Value": "1"}).status_code == 201
    )
    pem = make_certificate(f"CN_{user}", days=90).public_bytes(serialization.Encoding.PEM)
    body = {"User": user + "_unauthorised", "Certificate": base64.b64encode(pem).decode()}
    mapping = api.post("CertificateUserMappings", json=body).json()["d"]["Id"]
    fields = [
        (f"/ui/partners/{pid}/authorized-users/new", "User", user),
        (f"/ui/partners/{pid}/authorized-users/edit?user={user}", "Partner", pid),
        (f"/ui/partners/{pid}/authorized-users/copy?user={user}", "Copy to partner", pid),
        (f"/ui/partners/{pid}/authorized-users/copy?user={user}", "User of the copy", user),
        (f"/ui/partners/{pid}/copy", "Copy to partner", pid),
        ("/ui/new-certificate", "User", user),
        ("/ui/new-certificate", "Authorise this user for partner", pid),
        (f"/ui/certificates/{mapping}", "Partner ID", pid),
        ("/ui/new-rule", "User", user),
        (f"/ui/grid?set=string-parameters&filter=Pid eq '{pid}'", "Copy to partner", pid),
        ("/ui/new-document", "Partner ID", pid),
    ]
    missing = []
    with admin_tab(browser, server, "desktop") as tab:
        for path, label, name in fields:
            tab.goto(path)
            field = tab.get_by_label(label, exact=label in ("User", "Partner"))
            expect(field).to_have_count(1)
            offered = field.get_attribute("list")
            if offered is None:
                missing.append((path, label))
                continue
            options = tab.locator(f"datalist#{offered} option")  # filled after the page loads
            expect(options.first).to_be_attached()
            if name not in options.evaluate_all("os => os.map(o => o.value)"):
                missing.append((path, label))
    assert missing == [], f"fields without the store's names: {missing}"


def test_a_certificate_upload_authorises_its_user_in_the_same_change(
    browser: Browser, server: Server, api: Api, tmp_path: Path
) -> None:
    pid, user = "Cert_" + uuid.uuid4().hex[:6], _name("certuser")
    assert (
        api.post("StringParameters", json={"Pid": pid, "Id": "X", "Value": "1"}).status_code == 201
    )
    cert = tmp_path / "c.pem"
    cert.write_bytes(
        make_certificate(f"CN_{user}", days=90).public_bytes(serialization.Encoding.PEM)
    )
    with admin_tab(browser, server, "desktop") as tab:
        tab.goto("/ui/new-certificate")
        expect(tab.locator(f'#picker-partners option[value="{pid}"]')).to_have_count(1)
        assert tab.get_by_label("User", exact=True).get_attribute("list") == "picker-users"
        tab.get_by_label("User", exact=True).fill(user)
        tab.get_by_label("Upload a file").set_input_files(str(cert))
        tab.get_by_label("Authorise this user for partner").fill(pid)
        tab.get_by_role("button", name="Map certificate").click()
        expect(tab.locator(".flash")).to_contain_text(f"authorized user of partner '{pid}'")
    assert api.get(f"AuthorizedUsers('{user}')").json()["d"]["Pid"] == pid


def test_a_refused_authorisation_maps_no_certificate(ui: httpx.Client, api: Api) -> None:
    user = _name("taken")
    assert (
        api.post("AuthorizedUsers", json={"Pid": "Owner_" + user, "User": user}).status_code == 201
    )
    pem = make_certificate(f"CN_{user}", days=90).public_bytes(serialization.Encoding.PEM)
    form = ui.get("/ui/new-certificate")
    refused = ui.post(
        "/ui/new-certificate",
        data={
            "csrf": csrf_of(form.text),
            "User": user,
            "Text": pem.decode(),
            "Pid": "Other_" + user,
        },
    )
    assert refused.status_code == 400
    assert "already an authorized user of partner" in unescape(refused.text)
    mapped = api.get("CertificateUserMappings", params={"$filter": f"User eq '{user}'"})
    assert mapped.json()["d"]["results"] == []
