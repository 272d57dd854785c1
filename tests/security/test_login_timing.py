"""Logins tell nothing by their timing, are throttled, and are not starved (findings 8, 9).

- An unknown user costs a password check like a wrong password does (API Basic, UI
  sign-in, OAuth clients): compared as medians of the same server, never against a clock.
- After ``login_failures_per_user_address`` failures a user is refused (429) from that
  address untried, while the right password from another address still signs in.
- With a hundred wrong passwords being checked, a remembered credential and a first login
  from another address are answered before the wrong ones are through.
"""

from __future__ import annotations

import asyncio
import secrets
import statistics
import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import pytest

from ..conftest import ADMIN_ROLE, Server, start_server, stop_server
from .helpers import client_from, csrf_of, sign_in

TRIES = 20
LIMIT = 3


@pytest.fixture(scope="module")
def lenient(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[Server]:
    """A server that never throttles, so every try takes a password check."""
    env = {
        "PARTNERGATE_LOGIN_FAILURES_PER_USER_ADDRESS": "100000",
        "PARTNERGATE_LOGIN_FAILURES_PER_ADDRESS": "100000",
        "PARTNERGATE_LOGIN_FAILURES_PER_USER": "100000",
        "PARTNERGATE_PASSWORD_CHECKS_PER_ADDRESS": "200",
    }
    srv = start_server(tmp_path_factory.mktemp("lenient"), store_url, env)
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[Server]:
    env = {
        "PARTNERGATE_LOGIN_FAILURES_PER_USER_ADDRESS": str(LIMIT),
        "PARTNERGATE_LOGIN_FAILURES_PER_ADDRESS": "8",
        "PARTNERGATE_LOGIN_FAILURES_PER_USER": "50",
    }
    srv = start_server(tmp_path_factory.mktemp("strict"), store_url, env)
    try:
        yield srv
    finally:
        stop_server(srv)


def medians(
    wrong: Callable[[int], int], unknown: Callable[[int], int], expected: int
) -> tuple[float, float]:
    """Median seconds of a wrong password and of an unknown name, tried in turn, so that
    whatever else the machine does weighs on both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for n in range(TRIES):
        for attempt, kept in ((wrong, times[0]), (unknown, times[1])):
            started = time.perf_counter()
            status = attempt(n)
            kept.append(time.perf_counter() - started)
            assert status == expected
    return statistics.median(times[0]), statistics.median(times[1])


def new_user(server: Server) -> tuple[str, str]:
    user = ("t_" + uuid.uuid4().hex[:8], secrets.token_urlsafe(12))
    server.add_user(*user, ADMIN_ROLE)
    return user


def test_an_unknown_user_costs_a_password_check_on_the_api(lenient: Server) -> None:
    name, _ = new_user(lenient)
    with httpx.Client(base_url=lenient.api, timeout=60) as client:

        def wrong(n: int) -> int:
            return client.get("/StringParameters", auth=(name, f"wrong-{n}")).status_code

        def unknown(n: int) -> int:
            ghost = f"ghost_{uuid.uuid4().hex[:8]}"
            return client.get("/StringParameters", auth=(ghost, f"wrong-{n}")).status_code

        wrong(-1), unknown(-1)  # connections open, code paths warm
        wrong_median, unknown_median = medians(wrong, unknown, 401)
    assert unknown_median >= wrong_median / 2, (unknown_median, wrong_median)


def test_an_unknown_user_costs_a_password_check_at_sign_in(lenient: Server) -> None:
    name, _ = new_user(lenient)
    with httpx.Client(base_url=lenient.url, timeout=60) as client:
        token = csrf_of(client.get("/ui/signin").text)

        def attempt(user: str, n: int) -> int:
            form = {"name": user, "password": f"wrong-{n}", "csrf": token, "next": ""}
            return client.post("/ui/signin", data=form).status_code

        attempt(name, -1)
        wrong_median, unknown_median = medians(
            lambda n: attempt(name, n), lambda n: attempt(f"ghost_{n}_{name}", n), 400
        )
    assert unknown_median >= wrong_median / 2, (unknown_median, wrong_median)


def test_an_unknown_client_costs_a_secret_check_at_the_token_endpoint(lenient: Server) -> None:
    client_id = "tc_" + uuid.uuid4().hex[:8]
    lenient.add_client(client_id, secrets.token_urlsafe(12), ADMIN_ROLE)
    with httpx.Client(base_url=lenient.url, timeout=60) as client:

        def attempt(cid: str, n: int) -> int:
            form = {"grant_type": "client_credentials"}
            return client.post("/oauth/token", data=form, auth=(cid, f"wrong-{n}")).status_code

        attempt(client_id, -1)
        wrong_median, unknown_median = medians(
            lambda n: attempt(client_id, n), lambda n: attempt(f"ghost_{n}_{client_id}", n), 401
        )
    assert unknown_median >= wrong_median / 2, (unknown_median, wrong_median)


def test_failed_logins_are_throttled_per_user_and_address(strict: Server) -> None:
    name, password = new_user(strict)
    with client_from(strict, "127.0.0.1") as guesser:
        for n in range(LIMIT):
            r = guesser.get("/api/v1/StringParameters", auth=(name, f"guess-{n}"))
            assert r.status_code == 401
        refused = guesser.get(
            "/api/v1/StringParameters",
            auth=(name, "guess-next"),
            headers={"Accept": "application/json"},
        )
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0
        assert refused.json()["error"]["message"]["value"]
        # even the right password is not tried from there now
        assert guesser.get("/api/v1/", auth=(name, password)).status_code == 429
    with client_from(strict, "127.0.0.2") as owner:
        assert owner.get("/api/v1/StringParameters", auth=(name, password)).status_code == 200
        with client_from(strict, "127.0.0.2") as browser:
            assert sign_in(browser, name, password).status_code == 303
    assert "too many failed logins" in strict.log()


def test_the_sign_in_form_is_throttled_too(strict: Server) -> None:
    name, password = new_user(strict)
    with client_from(strict, "127.0.0.3") as browser:
        statuses = [sign_in(browser, name, f"guess-{n}").status_code for n in range(LIMIT + 1)]
        assert statuses == [400] * LIMIT + [429]
        page = sign_in(browser, name, "guess-again")
        assert page.status_code == 429 and "Too many failed sign-ins" in page.text
    with client_from(strict, "127.0.0.4") as other:
        assert sign_in(other, name, password).status_code == 303


def test_one_address_spraying_many_users_is_throttled(strict: Server) -> None:
    name, password = new_user(strict)
    with client_from(strict, "127.0.0.5") as sprayer:
        statuses = [
            sprayer.get("/api/v1/", auth=(f"spray_{n}", "Winter2026!")).status_code
            for n in range(9)
        ]
        assert statuses == [401] * 8 + [429]
        assert sprayer.get("/api/v1/", auth=(name, "Winter2026!")).status_code == 429
    with client_from(strict, "127.0.0.6") as owner:
        assert owner.get("/api/v1/", auth=(name, password)).status_code == 200


def test_a_correct_login_is_not_queued_behind_wrong_ones(lenient: Server) -> None:
    victim = new_user(lenient)
    remembered = new_user(lenient)
    newcomer = new_user(lenient)
    url = lenient.api + "/"

    async def main() -> tuple[list[float], float, float]:
        attackers = [
            httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(local_address=f"127.0.1.{n}"),
                timeout=300,
                limits=httpx.Limits(max_connections=100),
            )
            for n in range(1, 11)
        ]
        async with httpx.AsyncClient(timeout=300) as known:
            first = await known.get(url, auth=remembered)
            assert first.status_code == 200  # now the node remembers this login
            done: list[float] = []

            async def guess(n: int) -> None:
                r = await attackers[n % 10].get(url, auth=(victim[0], f"wrong-{n}"))
                assert r.status_code == 401, r.text
                done.append(time.monotonic())

            flood = [asyncio.create_task(guess(n)) for n in range(100)]
            await asyncio.sleep(0.5)  # the guesses are in flight
            r = await known.get(url, auth=remembered)
            assert r.status_code == 200
            remembered_at = time.monotonic()
            transport = httpx.AsyncHTTPTransport(local_address="127.0.2.1")
            async with httpx.AsyncClient(transport=transport, timeout=300) as fresh:
                r = await fresh.get(url, auth=newcomer)
                assert r.status_code == 200
                newcomer_at = time.monotonic()
            await asyncio.gather(*flood)
        for client in attackers:
            await client.aclose()
        return done, remembered_at, newcomer_at

    done, remembered_at, newcomer_at = asyncio.run(main())
    assert len(done) == 100
    after_remembered = sum(t > remembered_at for t in done)
    after_newcomer = sum(t > newcomer_at for t in done)
    assert after_remembered >= 50, f"only {after_remembered} guesses were still in flight"
    assert after_newcomer >= 50, f"only {after_newcomer} guesses were still in flight"


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory, store_url: str) -> Iterator[Server]:
    """A server behind a trusted proxy at 127.0.0.7, which sends X-Forwarded-For."""
    env = {
        "PARTNERGATE_LOGIN_FAILURES_PER_USER_ADDRESS": str(LIMIT),
        "PARTNERGATE_TRUSTED_PROXIES": "127.0.0.7/32",
        "PARTNERGATE_VERIFY_FORWARDED_CERTS": "false",
    }
    srv = start_server(tmp_path_factory.mktemp("proxied"), store_url, env)
    try:
        yield srv
    finally:
        stop_server(srv)


def test_behind_a_trusted_proxy_the_forwarded_address_counts(proxied: Server) -> None:
    name, password = new_user(proxied)

    def login(via: str, forwarded: str, secret: str) -> int:
        with client_from(proxied, via) as client:
            headers = {"X-Forwarded-For": forwarded}
            return client.get("/api/v1/", auth=(name, secret), headers=headers).status_code

    # a client's own X-Forwarded-For entry is ignored: the proxy appended the real one
    guesses = [login("127.0.0.7", f"10.9.9.{n}, 203.0.113.5", "guess") for n in range(LIMIT + 1)]
    assert guesses == [401] * LIMIT + [429]
    assert login("127.0.0.7", "203.0.113.6", password) == 200
    # from a peer that is no trusted proxy, the header means nothing
    assert login("127.0.0.8", "203.0.113.5", password) == 200
    assert [login("127.0.0.9", "203.0.113.6", "guess") for _ in range(LIMIT + 1)][-1] == 429
    assert login("127.0.0.7", "203.0.113.6", password) == 200  # the proxy's client is not 127.0.0.9
