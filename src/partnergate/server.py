"""Starting uvicorn with the listeners the settings ask for."""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from .config import ConfigError, Settings
from .web.app import create_app


def split_host_port(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{option} must be HOST:PORT, got '{value}'")
    return host.strip("[]") or "127.0.0.1", int(port)


def uvicorn_config(settings: Settings) -> uvicorn.Config:
    if settings.http is None:
        raise ConfigError("no listener: give --http HOST:PORT")
    host, port = split_host_port(settings.http, "--http")
    return uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_level=settings.log_level,
        proxy_headers=False,
        server_header=False,
        access_log=True,
    )


def serve(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )
    server = uvicorn.Server(uvicorn_config(settings))
    asyncio.run(server.serve())
