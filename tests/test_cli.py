"""The ``partnergate`` command: help, the user and client stores, clear one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import cli


@pytest.fixture
def env(tmp_path: Path, store_url: str) -> dict[str, str]:
    return {**os.environ, "PARTNERGATE_DB": store_url, "PARTNERGATE_DATA_DIR": str(tmp_path)}


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["serve"],
        ["users"],
        ["users", "add"],
        ["users", "list"],
        ["users", "remove"],
        ["users", "set-password"],
        ["clients"],
        ["clients", "add"],
        ["clients", "list"],
        ["clients", "remove"],
        ["db", "upgrade"],
        ["demo"],
    ],
)
def test_every_command_has_help(args: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "partnergate", *args, "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout


def test_users_add_list_remove(env: dict[str, str]) -> None:
    done = cli(
        "users",
        "add",
        "alice_cli",
        "--role",
        "A",
        "--role",
        "B",
        "--password-stdin",
        env=env,
        stdin="pw\n",
    )
    assert done.returncode == 0, done.stderr
    listed = cli("users", "list", env=env)
    assert "alice_cli\tA B" in listed.stdout
    again = cli("users", "add", "alice_cli", "--password-stdin", env=env, stdin="pw\n")
    assert again.returncode != 0
    assert again.stderr.strip().count("\n") == 0 and "already exists" in again.stderr
    assert cli("users", "remove", "alice_cli", env=env).returncode == 0
    gone = cli("users", "remove", "alice_cli", env=env)
    assert gone.returncode != 0 and "does not exist" in gone.stderr


def test_password_hashes_are_argon2(env: dict[str, str], store_url: str) -> None:
    cli("users", "add", "hashcheck", "--password-stdin", env=env, stdin="visible-password\n")
    if store_url.startswith("sqlite:///"):
        import sqlite3

        row = (
            sqlite3.connect(store_url[len("sqlite:///") :])
            .execute("select password_hash from local_users where name='hashcheck'")
            .fetchone()
        )
        assert row[0].startswith("$argon2id$") and "visible-password" not in row[0]
    cli("users", "remove", "hashcheck", env=env)


def test_clients_generate_a_secret_when_none_is_given(env: dict[str, str]) -> None:
    done = cli("clients", "add", "gen_client", "--role", "R", env=env)
    assert done.returncode == 0, done.stderr
    assert "client secret (shown once):" in done.stdout
    assert "gen_client\tR" in cli("clients", "list", env=env).stdout
    cli("clients", "remove", "gen_client", env=env)


def test_errors_are_one_line(env: dict[str, str], tmp_path: Path) -> None:
    bad_db = cli("--db", "mysql://x", "users", "list", env=env)
    assert bad_db.returncode != 0 and "not supported" in bad_db.stderr
    (tmp_path / "bad.toml").write_text("page_size = 'many'\n")
    bad_conf = cli("--config", str(tmp_path / "bad.toml"), "users", "list", env=env)
    assert bad_conf.returncode != 0 and "page_size" in bad_conf.stderr
    assert "Traceback" not in bad_db.stderr + bad_conf.stderr
    no_stdin = cli("users", "add", "x", env=env, stdin="")
    assert no_stdin.returncode != 0 and "Traceback" not in no_stdin.stderr


def test_db_upgrade_is_idempotent(env: dict[str, str]) -> None:
    for _ in range(2):
        done = cli("db", "upgrade", env=env)
        assert done.returncode == 0 and "up to date" in done.stdout
