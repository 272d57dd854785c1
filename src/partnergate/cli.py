"""The ``partnergate`` command."""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from .config import ConfigError, Settings, load_settings
from .model.errors import DirectoryError
from .store import database
from .store.accounts import Clients, Users
from .store.database import DatabaseURLError

T = TypeVar("T")


class Context:
    def __init__(self, config: str | None, db: str | None) -> None:
        self.config = config
        self.db = db

    def settings(self, **overrides: Any) -> Settings:
        try:
            return load_settings(self.config, {"db": self.db, **overrides})
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None


def run(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the database (migrating it), run ``work(engine)``, and close it."""

    async def main() -> T:
        engine = database.create_engine(settings.db)
        try:
            await database.upgrade(engine)
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except (DirectoryError, ConfigError, DatabaseURLError) as exc:
        raise click.ClickException(str(getattr(exc, "message", exc))) from None
    except OSError as exc:
        raise click.ClickException(f"cannot open the database: {exc}") from None


def read_secret(from_stdin: bool, what: str) -> str:
    if from_stdin:
        value = sys.stdin.readline().rstrip("\r\n")
        if not value:
            raise click.ClickException(f"no {what} on standard input")
        return value
    if not sys.stdin.isatty():
        raise click.ClickException(f"give the {what} on standard input with --{what}-stdin")
    return str(click.prompt(what.capitalize(), hide_input=True, confirmation_prompt=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config", metavar="FILE", help="TOML settings file.")
@click.option("--db", metavar="URL", help="Database URL (sqlite:///FILE or postgresql://...).")
@click.version_option(package_name="partnergate")
@click.pass_context
def main(ctx: click.Context, config: str | None, db: str | None) -> None:
    """partnergate: a Partner Directory and B2B gateway, compatible with SAP Cloud Integration."""
    ctx.obj = Context(config, db)


@main.command()
@click.option("--config", "config", metavar="FILE", help="TOML settings file.")
@click.option("--db", metavar="URL", help="Database URL; default sqlite:///./partnergate.db.")
@click.option("--http", metavar="HOST:PORT", help="Plain HTTP listener; default 127.0.0.1:8080.")
@click.pass_obj
def serve(obj: Context, config: str | None, db: str | None, http: str | None) -> None:
    """Run the server (applies pending database migrations first)."""
    from .server import serve as serve_forever

    try:
        settings = load_settings(config or obj.config, {"db": db or obj.db, "http": http})
        serve_forever(settings)
    except (ConfigError, DatabaseURLError) as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(obj: Context) -> None:
    """Apply pending migrations."""

    async def work(engine: Any) -> None:
        return None

    run(obj.settings(), work)
    click.echo("database is up to date")


def _account_group(
    name: str, table: type[Users] | type[Clients], label: str, secret_word: str
) -> click.Group:
    group = click.Group(name, help=f"Manage {label}s.")

    @group.command("add")
    @click.argument("account")
    @click.option(
        "--role", "roles", multiple=True, metavar="ROLE", help="A role to grant; repeatable."
    )
    @click.option(
        f"--{secret_word}-stdin",
        "from_stdin",
        is_flag=True,
        help=f"Read the {secret_word} from standard input.",
    )
    @click.pass_obj
    def add(obj: Context, account: str, roles: tuple[str, ...], from_stdin: bool) -> None:
        generated = False
        if table is Clients and not from_stdin:
            secret = secrets.token_urlsafe(24)
            generated = True
        else:
            secret = read_secret(from_stdin, secret_word)
        run(obj.settings(), lambda engine: table(engine).add(account, secret, list(roles)))
        click.echo(f"{label} '{account}' added with roles: {' '.join(roles) or '(none)'}")
        if generated:
            click.echo(f"client secret (shown once): {secret}")

    @group.command("list")
    @click.pass_obj
    def list_(obj: Context) -> None:
        accounts = run(obj.settings(), lambda engine: table(engine).list())
        for account in accounts:
            click.echo(f"{account.name}\t{' '.join(account.roles)}")

    @group.command("remove")
    @click.argument("account")
    @click.pass_obj
    def remove(obj: Context, account: str) -> None:
        run(obj.settings(), lambda engine: table(engine).remove(account))
        click.echo(f"{label} '{account}' removed")

    @group.command(f"set-{secret_word}")
    @click.argument("account")
    @click.option(
        f"--{secret_word}-stdin",
        "from_stdin",
        is_flag=True,
        help=f"Read the {secret_word} from standard input.",
    )
    @click.pass_obj
    def set_secret(obj: Context, account: str, from_stdin: bool) -> None:
        secret = read_secret(from_stdin, secret_word)
        run(obj.settings(), lambda engine: table(engine).set_secret(account, secret))
        click.echo(f"{secret_word} of {label} '{account}' changed")

    @group.command("set-roles")
    @click.argument("account")
    @click.option(
        "--role", "roles", multiple=True, metavar="ROLE", help="A role to grant; repeatable."
    )
    @click.pass_obj
    def set_roles(obj: Context, account: str, roles: tuple[str, ...]) -> None:
        run(obj.settings(), lambda engine: table(engine).set_roles(account, list(roles)))
        click.echo(f"roles of {label} '{account}': {' '.join(roles) or '(none)'}")

    return group


main.add_command(_account_group("users", Users, "user", "password"))
main.add_command(_account_group("clients", Clients, "OAuth client", "secret"))


@main.command()
@click.option(
    "--http",
    metavar="HOST:PORT",
    default="127.0.0.1:0",
    show_default=True,
    help="Listener; port 0 picks a free one.",
)
@click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="Database URL; default: a new SQLite file in a temporary directory.",
)
@click.option("--keep-running", is_flag=True, help="Leave the server up after the scenario.")
def demo(http: str, db_url: str | None, keep_running: bool) -> None:
    """Run the seed scenario against a fresh server and show how to call it."""
    from .demo import run_demo

    run_demo(http, db_url, keep_running)


if __name__ == "__main__":
    main()
