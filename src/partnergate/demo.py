"""``partnergate demo``: a server on SQLite with an administrator, and the seed scenario's
Partner Directory entries made through the public API exactly as SAP's blog makes them.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import tempfile
from pathlib import Path

import click
import httpx
import uvicorn

from .config import load_settings
from .security.principals import PARTNER_DIRECTORY_CONFIGURATOR
from .server import split_host_port
from .store import database
from .store.accounts import Clients, Users
from .web.app import create_app

ADMIN = "admin"


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _step(text: str) -> None:
    click.echo(f"==> {text}")


async def _seed(base: str, password: str) -> None:
    auth = (ADMIN, password)
    async with httpx.AsyncClient(base_url=base, auth=auth, timeout=30) as client:
        fetched = await client.get("/api/v1/", headers={"X-CSRF-Token": "Fetch"})
        fetched.raise_for_status()
        headers = {"X-CSRF-Token": fetched.headers["x-csrf-token"], "Accept": "application/json"}
        entries = [
            (
                "StringParameters",
                {"Pid": "Receiver_1", "Id": "ADDRESS", "Value": f"{base}/cxf/receiver_1"},
            ),
            (
                "StringParameters",
                {"Pid": "Receiver_2", "Id": "ADDRESS", "Value": f"{base}/cxf/receiver_2"},
            ),
            ("AuthorizedUsers", {"User": "Sender_BASIC_user", "Pid": "Sender_BASIC"}),
            (
                "AuthorizedUsers",
                {"User": "oauth_client_client_sender_oauth", "Pid": "Sender_OAUTH"},
            ),
            ("AuthorizedUsers", {"User": "user_for_sender_cert", "Pid": "Sender_CERT"}),
            (
                "UserCredentialParameters",
                {
                    "Pid": "Receiver_1",
                    "Id": "USER",
                    "User": "user_receiver_1",
                    "Password": secrets.token_urlsafe(12),
                },
            ),
            (
                "UserCredentialParameters",
                {
                    "Pid": "Receiver_2",
                    "Id": "USER",
                    "User": "user_receiver_2",
                    "Password": secrets.token_urlsafe(12),
                },
            ),
        ]
        for entity_set, body in entries:
            response = await client.post(f"/api/v1/{entity_set}", json=body, headers=headers)
            if response.status_code != 201:
                raise click.ClickException(
                    f"POST {entity_set} answered {response.status_code}: {response.text}"
                )
            shown = {k: v for k, v in body.items() if k != "Password"}
            _step(f"POST /api/v1/{entity_set} {shown} -> {response.status_code}")
        partners = await client.get("/api/v1/Partners", params={"$format": "json"})
        names = [p["Pid"] for p in partners.json()["d"]["results"]]
        _step(f"GET /api/v1/Partners -> {', '.join(names)}")


def run_demo(http: str, db_url: str | None, keep_running: bool = False) -> None:
    host, port = split_host_port(http, "--http")
    workdir = Path(tempfile.mkdtemp(prefix="partnergate-demo-"))
    if port == 0:
        port = _free_port(host)
    settings = load_settings(
        None,
        {
            "db": db_url or f"sqlite:///{workdir / 'partnergate.db'}",
            "http": f"{host}:{port}",
            "data_dir": str(workdir),
        },
    )
    password = secrets.token_urlsafe(16)

    async def main() -> None:
        engine = database.create_engine(settings.db)
        await database.upgrade(engine)
        await Users(engine).add(ADMIN, password, [PARTNER_DIRECTORY_CONFIGURATOR])
        await Clients(engine).add(
            "client_sender_oauth", secrets.token_urlsafe(16), ["ESBMessaging.send"]
        )
        await engine.dispose()
        _step(f"store: {settings.db}")
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning")
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
                raise click.ClickException("the server did not start")
            await asyncio.sleep(0.05)
        base = f"http://{host}:{port}"
        _step(f"server listening on {base}")
        await _seed(base, password)
        click.echo("")
        click.echo(f"Administrator: {ADMIN} / {password}")
        click.echo(f"  curl -u {ADMIN}:{password} '{base}/api/v1/StringParameters?$format=json'")
        click.echo(f"  curl -u {ADMIN}:{password} '{base}/api/v1/$metadata'")
        if keep_running:
            click.echo("Press Ctrl-C to stop.")
            await task
        else:
            server.should_exit = True
            await task

    asyncio.run(main())
