"""The ``partnergate`` command."""

from __future__ import annotations

import asyncio
import getpass
import json
import secrets
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import click
from cryptography import x509

from .config import ConfigError, Settings, load_settings
from .model.errors import DirectoryError
from .security import pki as dev_pki
from .security.certificates import (
    CertificateInfo,
    CertificateRejected,
    TrustStore,
    load_certificate,
    load_certificates,
    verify_client_chain,
)
from .security.principals import ESB_MESSAGING_SEND, AuthMethod, Principal, oauth_client_user
from .security.secretbox import SecretBox
from .security.senders import SenderIdentity, Senders
from .store import database
from .store.accounts import Account, Clients, Users
from .store.database import DatabaseURLError
from .store.directory import DirectoryStore
from .store.reader import StoreReader

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
@click.option(
    "--http",
    metavar="HOST:PORT",
    help="Plain HTTP listener; default 127.0.0.1:8080, 'off' for none.",
)
@click.option(
    "--https", metavar="HOST:PORT", help="TLS listener (beside --http unless that is off)."
)
@click.option("--tls-cert", metavar="FILE", help="PEM server certificate, then intermediates.")
@click.option("--tls-key", metavar="FILE", help="PEM private key of the server certificate.")
@click.option("--client-ca", metavar="FILE", help="PEM bundle of the CAs trusted for clients.")
@click.option(
    "--client-cert",
    type=click.Choice(["optional", "required"]),
    help="Whether the TLS listener demands a client certificate; default optional.",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    metavar="CIDR",
    help="Believe client-certificate headers from this network; repeatable.",
)
@click.pass_obj
@click.option(
    "--flows",
    metavar="DIR",
    help="Folder of flow files to deploy; reloaded when a file changes and on SIGHUP.",
)
@click.option(
    "--keepalive-timeout",
    type=click.IntRange(min=1),
    metavar="SECONDS",
    help="Close a keep-alive connection idle this long after a response; default 15.",
)
@click.option(
    "--header-timeout",
    type=click.IntRange(min=1),
    metavar="SECONDS",
    help="Time for a request's headers (and the TLS handshake); default 10.",
)
@click.option(
    "--max-header-bytes",
    type=click.IntRange(min=1),
    metavar="BYTES",
    help="Largest request line and header block; default 65536.",
)
@click.option(
    "--body-timeout",
    type=click.IntRange(min=1),
    metavar="SECONDS",
    help="Time for a request's body, from the end of its headers; default 60.",
)
@click.option(
    "--max-connections",
    metavar="N",
    help="Open connections per listener, more are refused; default 'auto' (from ulimit -n).",
)
@click.option(
    "--metrics-http",
    metavar="HOST:PORT",
    help="A listener of its own for /metrics (no credentials there) and the probes.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    help="Server log lines as text (default) or one JSON object per line.",
)
@click.option(
    "--workers",
    metavar="N",
    help="Server processes sharing the listeners; default 'auto' (the CPUs it may use).",
)
def serve(
    obj: Context,
    config: str | None,
    db: str | None,
    http: str | None,
    https: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    client_ca: str | None,
    client_cert: str | None,
    trusted_proxies: tuple[str, ...],
    flows: str | None,
    keepalive_timeout: int | None,
    header_timeout: int | None,
    max_header_bytes: int | None,
    body_timeout: int | None,
    max_connections: str | None,
    metrics_http: str | None,
    log_format: str | None,
    workers: str | None,
) -> None:
    """Run the server (applies pending database migrations first).

    SIGHUP re-reads --tls-cert, --tls-key and --client-ca for new connections, and the
    flows.
    """
    from .server import serve as serve_forever

    overrides = {
        "db": db or obj.db,
        "http": http,
        "https": https,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "client_ca": client_ca,
        "client_cert": client_cert,
        "trusted_proxies": list(trusted_proxies) or None,
        "flows": flows,
        "keepalive_timeout": keepalive_timeout,
        "header_timeout": header_timeout,
        "max_header_bytes": max_header_bytes,
        "body_timeout": body_timeout,
        "max_connections": max_connections,
        "metrics_http": metrics_http,
        "log_format": log_format,
        "workers": workers,
    }
    try:
        settings = load_settings(config or obj.config, overrides)
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


def _actor() -> str:
    """Who the change history names for a change made with this command."""
    return f"cli:{getpass.getuser()}"


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
        actor = _actor()
        run(obj.settings(), lambda engine: table(engine).add(account, secret, list(roles), actor))
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
        run(obj.settings(), lambda engine: table(engine).remove(account, _actor()))
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
        run(obj.settings(), lambda engine: table(engine).set_secret(account, secret, _actor()))
        click.echo(f"{secret_word} of {label} '{account}' changed")

    @group.command("set-roles")
    @click.argument("account")
    @click.option(
        "--role", "roles", multiple=True, metavar="ROLE", help="A role to grant; repeatable."
    )
    @click.pass_obj
    def set_roles(obj: Context, account: str, roles: tuple[str, ...]) -> None:
        run(obj.settings(), lambda engine: table(engine).set_roles(account, list(roles), _actor()))
        click.echo(f"roles of {label} '{account}': {' '.join(roles) or '(none)'}")

    return group


main.add_command(_account_group("users", Users, "user", "password"))
main.add_command(_account_group("clients", Clients, "OAuth client", "secret"))


@main.group()
def partners() -> None:
    """Rename or copy partners (each one transaction, recorded in the change history)."""


def _partner_work(obj: Context, work: Callable[[Any, str], Awaitable[T]]) -> T:
    settings = obj.settings()
    actor = _actor()

    async def step(engine: Any) -> T:
        box = SecretBox.from_key_file(Path(settings.credential_key_file))
        store = DirectoryStore(engine, box)
        async with store.begin(actor) as directory:
            return await work(directory, actor)

    return run(settings, step)


@partners.command("rename")
@click.argument("old")
@click.argument("new")
@click.pass_obj
def partners_rename(obj: Context, old: str, new: str) -> None:
    """Move every entity of partner OLD to the new partner ID NEW, in one transaction."""
    from .store.copies import rename_partner

    moved = _partner_work(obj, lambda d, actor: rename_partner(d, old, new, actor))
    click.echo(f"partner '{old}' renamed to '{new}': {moved.total} entities moved")


@partners.command("copy")
@click.argument("source")
@click.argument("target")
@click.pass_obj
def partners_copy(obj: Context, source: str, target: str) -> None:
    """Copy the parameters and user credentials of SOURCE to partner TARGET."""
    from .store.copies import copy_partner

    moved = _partner_work(obj, lambda d, actor: copy_partner(d, source, target, actor))
    click.echo(f"{moved.total} entities of '{source}' copied to '{target}'")
    for name, count in moved.skipped.items():
        click.echo(f"not copied: {count} {name} (they name one partner only)")


@main.group()
def pki() -> None:
    """A development PKI: a CA, server and client certificates, mapping bodies.

    Private keys are written unencrypted with mode 0600, like openssl req -nodes.
    """


KEY_TYPE = click.option(
    "--key-type", type=click.Choice(["ec", "rsa"]), default="ec", show_default=True
)


def _pki_step(work: Callable[[], T]) -> T:
    """Run a PKI step; what goes wrong becomes one line."""
    try:
        return work()
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"{exc.filename or ''}: {exc.strerror or exc}") from None
    except DirectoryError as exc:
        raise click.ClickException(exc.message) from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _load_ca(directory: Path) -> dev_pki.CA:
    if not (directory / dev_pki.CA_KEY).is_file():
        raise click.ClickException(
            f"no CA in {directory}: create one with 'partnergate pki init {directory}'"
        )
    return _pki_step(lambda: dev_pki.load_ca(directory))


def _show(*paths: Path) -> None:
    for path in paths:
        click.echo(str(path))


@pki.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="partnergate dev CA", show_default=True, help="CA common name.")
@click.option("--days", type=click.IntRange(min=1), default=3650, show_default=True)
@KEY_TYPE
def pki_init(directory: Path, name: str, days: int, key_type: str) -> None:
    """Create a CA in DIRECTORY: ca.key and ca.crt (the file for --client-ca)."""
    if (directory / dev_pki.CA_KEY).exists():
        raise click.ClickException(
            f"{directory} already holds a CA; issue certificates from it or choose another"
        )
    ca = _pki_step(
        lambda: dev_pki.init_ca(
            directory, name, key_type=cast(dev_pki.KeyType, key_type), days=days
        )
    )
    _show(ca.key_path, ca.cert_path)


@pki.command("server")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--host",
    "hosts",
    multiple=True,
    required=True,
    metavar="NAME",
    help="DNS name or IP; repeatable.",
)
@click.option("--name", default="server", show_default=True, help="Stem of the file names.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Default: DIRECTORY.")
@click.option("--days", type=click.IntRange(min=1), default=397, show_default=True)
@KEY_TYPE
def pki_server(
    directory: Path, hosts: tuple[str, ...], name: str, out: Path | None, days: int, key_type: str
) -> None:
    """Issue a TLS server certificate from the CA in DIRECTORY.

    Writes NAME.key (--tls-key), NAME-chain.pem (--tls-cert) and NAME.crt.
    """
    ca = _load_ca(directory)
    bundle = _pki_step(
        lambda: dev_pki.issue_server(
            ca,
            out or directory,
            list(hosts),
            name=name,
            key_type=cast(dev_pki.KeyType, key_type),
            days=days,
        )
    )
    _show(bundle.key_path, bundle.cert_path, bundle.chain_path)


@pki.command("client")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("name")
@click.option("--password-stdin", "from_stdin", is_flag=True, help="Read the keystore password.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Default: DIRECTORY.")
@click.option("--days", type=click.IntRange(min=1), default=365, show_default=True)
@click.option("--legacy-p12", is_flag=True, help="SHA-1/3DES keystore for Java before 8u301.")
@KEY_TYPE
def pki_client(
    directory: Path,
    name: str,
    from_stdin: bool,
    out: Path | None,
    days: int,
    legacy_p12: bool,
    key_type: str,
) -> None:
    """Issue a client certificate CN=NAME from the CA in DIRECTORY.

    Writes NAME.key, NAME.crt, NAME-chain.pem (for curl --cert/--key) and NAME.p12 (key
    and chain for SoapUI or curl --cert-type P12), encrypted with the password.
    """
    ca = _load_ca(directory)
    password = read_secret(from_stdin, "password")
    bundle = _pki_step(
        lambda: dev_pki.issue_client(
            ca,
            out or directory,
            name,
            password=password,
            days=days,
            key_type=cast(dev_pki.KeyType, key_type),
            legacy_p12=legacy_p12,
        )
    )
    _show(bundle.key_path, bundle.cert_path, bundle.chain_path, bundle.p12_path)


@pki.command("mapping-body")
@click.argument("cert", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--user", required=True, metavar="NAME", help="The user the certificate maps to.")
def pki_mapping_body(cert: Path, user: str) -> None:
    """Print the JSON body mapping CERT to a user: POST it to /api/v1/CertificateUserMappings."""
    certificate = _pki_step(lambda: load_certificate(cert.read_bytes()))
    click.echo(json.dumps(dev_pki.mapping_body(certificate, user), indent=2))


Facts = list[tuple[str, str]]
"""What ``whoami`` prints: (label, value) lines, in order."""


@main.command()
@click.option(
    "--cert",
    "cert_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A client certificate, PEM or DER (a PEM chain: the client's first).",
)
@click.option("--user", metavar="NAME", help="A user of the local store, as HTTP Basic signs in.")
@click.option(
    "--client", "client_id", metavar="CLIENT_ID", help="An OAuth client, as its bearer tokens do."
)
@click.option(
    "--client-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --cert: check the chain against this PEM CA bundle, as the TLS listener does.",
)
@click.pass_context
def whoami(
    ctx: click.Context,
    cert_file: Path | None,
    user: str | None,
    client_id: str | None,
    client_ca: Path | None,
) -> None:
    """Which user, partner and roles a sender resolves to at a flow endpoint, and why.

    Reads the store directly (no server, no password). Exits 0 when the sender would be
    let in (it has ESBMessaging.send), 1 when not.
    """
    if sum(given is not None for given in (cert_file, user, client_id)) != 1:
        raise click.UsageError("give exactly one of --cert, --user or --client")
    if client_ca is not None and cert_file is None:
        raise click.UsageError("--client-ca checks a certificate: give --cert too")
    chain = _chain_in(cert_file) if cert_file else []
    trust = _trust_in(client_ca) if client_ca else None
    obj: Context = ctx.obj

    async def work(engine: Any) -> tuple[Facts, bool]:
        # Nothing is decrypted here: the key only completes the constructor.
        store = DirectoryStore(engine, SecretBox(secrets.token_bytes(32)))
        reader = StoreReader(store)
        resolver = Senders(reader, reader)
        if chain:
            return await _whoami_certificate(resolver, chain, trust)
        if user is not None:
            account = await Users(engine).get(user)
            return await _whoami_account(resolver, "local user", user, user, account)
        assert client_id is not None
        account = await Clients(engine).get(client_id)
        name = oauth_client_user(client_id)
        return await _whoami_account(resolver, "OAuth client", client_id, name, account)

    facts, admitted = run(obj.settings(), work)
    width = max(len(label) for label, _ in facts) + 2
    for label, value in facts:
        click.echo(f"{label:<{width}}{value}")
    ctx.exit(0 if admitted else 1)


def _chain_in(path: Path) -> list[x509.Certificate]:
    """The certificates of a file, the client's first; a bad file is one line naming it."""
    try:
        return load_certificates(path.read_bytes())
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror or exc}") from None
    except DirectoryError as exc:
        raise click.ClickException(f"{path}: {exc.message}") from None


def _trust_in(path: Path) -> TrustStore:
    """The CAs of a ``--client-ca`` bundle, read as the TLS listener reads them."""
    try:
        return TrustStore.from_pem_file(path)
    except OSError as exc:
        raise click.ClickException(f"{path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


async def _whoami_certificate(
    resolver: Senders, chain: list[x509.Certificate], trust: TrustStore | None
) -> tuple[Facts, bool]:
    """The certificate's facts, what maps it, and the verdict the flow endpoints give."""
    leaf = chain[0]
    info = CertificateInfo.from_certificate(leaf)
    reader = cast(StoreReader, resolver.reader)
    facts: Facts = [
        ("subject", info.subject),
        ("issuer", info.issuer),
        ("serial", info.serial),
        ("sha-256", info.sha256),
        ("validity", _validity(info)),
        ("mapping id", info.mapping_id),
    ]
    refused = ""
    if trust is not None:
        try:
            verify_client_chain(leaf, chain[1:], trust)
            facts.append(("client ca", "accepted: the chain leads to a trusted CA"))
        except CertificateRejected as exc:
            facts.append(("client ca", f"refused: {exc}"))
            refused = f"the TLS listener refuses the certificate ({exc})"
    mapping = await reader.certificate_mapping(leaf)
    rule = None if mapping else await reader.mapping_rule(leaf)
    if mapping is not None:
        facts.append(("mapped", f"yes, CertificateUserMappings('{mapping.mapping_id}')"))
    else:
        facts.append(("mapped", "no CertificateUserMappings entry names this certificate"))
        matched = f"CertificateMappingRules('{rule.rule_id}') ({rule.kind})" if rule else "none"
        facts.append(("mapping rule", matched))
    user = mapping.user if mapping else rule.user if rule else None
    if user is None:
        facts.append(("user", "none"))
    else:
        partner = await reader.get_partner_id_of_authorized_user(user)
        facts += [("user", user), ("authorised user", _partner_text(partner))]
    who = await resolver.from_certificate(leaf)
    if isinstance(who, SenderIdentity):
        return _verdict(facts, who.roles, refused)
    return _verdict(facts, frozenset(), refused or who)


async def _whoami_account(
    resolver: Senders, kind: str, name: str, user: str, account: Account | None
) -> tuple[Facts, bool]:
    """A local user or OAuth client: its own roles, then what its authorised-user entry adds."""
    if account is None:
        partner = await resolver.partners.get_partner_id_of_authorized_user(user)
        facts: Facts = [
            ("user", user),
            (kind, f"none: there is no {kind} '{name}' in the store"),
            ("authorised user", _partner_text(partner)),
        ]
        return _verdict(facts, frozenset(), f"nobody can sign in as {kind} '{name}'")
    method = AuthMethod.BASIC if kind == "local user" else AuthMethod.BEARER
    who = await resolver.with_partner(Principal(user, frozenset(account.roles), method), [])
    facts = [
        ("user", user),
        (kind, f"yes, with roles: {' '.join(account.roles) or '(none)'}"),
        ("authorised user", _partner_text(who.partner)),
    ]
    return _verdict(facts, who.roles, "")


def _verdict(facts: Facts, roles: frozenset[str], refused: str) -> tuple[Facts, bool]:
    """Roles, then whether a flow endpoint lets the sender in (0) or not (1), and why."""
    if not refused and ESB_MESSAGING_SEND not in roles:
        refused = f"without {ESB_MESSAGING_SEND} a flow endpoint answers 403"
    facts.append(("roles", " ".join(sorted(roles)) or "none"))
    facts.append(("let in", f"no: {refused}" if refused else "yes"))
    return facts, not refused


def _partner_text(partner: str | None) -> str:
    return (
        f"yes, of partner '{partner}'" if partner else "no: not an authorised user of any partner"
    )


def _validity(info: CertificateInfo) -> str:
    span = f"{info.not_before:%Y-%m-%d %H:%M} – {info.not_after:%Y-%m-%d %H:%M} UTC"
    now = datetime.now(UTC)
    if now < info.not_before:
        return f"{span}: not valid yet"
    if now > info.not_after:
        return f"{span}: expired"
    return f"{span}: valid now"


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address the demo's listeners bind to (free ports are picked).",
)
@click.option("--keep-running", is_flag=True, help="Leave the server up and print commands to try.")
def demo(host: str, keep_running: bool) -> None:
    """Run the seed scenario end to end on a fresh server in a temporary directory.

    Makes a PKI, starts HTTP and mTLS listeners with the example flows, configures the
    Partner Directory through the API and sends the scenario's messages.
    """
    from .demo import run_demo

    run_demo(host, keep_running)


# -- Partner Directory as code -------------------------------------------------------------


@main.group()
def pd() -> None:
    """Partner Directory as files: export, import, diff, pull, push (docs/pd-as-code.md)."""


def _pd_store(settings: Settings, engine: Any) -> DirectoryStore:
    from .model.rules import Limits

    secretbox = SecretBox.from_key_file(Path(settings.credential_key_file))
    return DirectoryStore(engine, secretbox, Limits(max_binary_bytes=settings.max_binary_bytes))


def _pd_pids(pids: str | None) -> list[str] | None:
    if pids is None:
        return None
    chosen = [p.strip() for p in pids.split(",") if p.strip()]
    if not chosen:
        raise click.UsageError("--pids needs at least one Pid")
    return chosen


def _pd_overlay(path: str | None) -> Any:
    from .pdcode.sync import Overlay

    return Overlay.load(Path(path)) if path else None


def _pd_remote(url: str, opts: dict[str, Any]) -> Any:
    import os

    from .pdcode.remote import Auth, Remote

    auth = Auth()
    if opts["token_url"]:
        if not opts["client_id"]:
            raise click.UsageError("--token-url needs --client-id")
        auth.token_url, auth.client_id = opts["token_url"], opts["client_id"]
        if opts["client_secret_env"]:
            auth.client_secret = os.environ.get(opts["client_secret_env"])
            if auth.client_secret is None:
                raise click.UsageError(
                    f"environment variable {opts['client_secret_env']} is not set"
                )
        else:
            auth.client_secret = sys.stdin.readline().rstrip("\r\n")
    elif opts["user"]:
        auth.user = opts["user"]
        if opts["password_env"]:
            auth.password = os.environ.get(opts["password_env"])
            if auth.password is None:
                raise click.UsageError(f"environment variable {opts['password_env']} is not set")
        else:
            auth.password = sys.stdin.readline().rstrip("\r\n")
    else:
        raise click.UsageError("give --token-url and --client-id, or --user")
    return Remote(url, auth, ca_file=opts["ca_file"], batch_size=opts.get("batch_size") or 90)


def _remote_options(func: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--token-url", metavar="URL", help="OAuth token URL (client credentials)."),
        click.option("--client-id", metavar="ID", help="OAuth client id."),
        click.option(
            "--client-secret-env",
            metavar="NAME",
            help="Environment variable holding the client secret (else read from stdin).",
        ),
        click.option("--user", metavar="NAME", help="HTTP Basic user."),
        click.option(
            "--password-env",
            metavar="NAME",
            help="Environment variable holding the Basic password (else read from stdin).",
        ),
        click.option("--ca-file", metavar="FILE", help="PEM CAs to trust for the remote's TLS."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


_MODE = click.option(
    "--mode",
    type=click.Choice(["add", "replace", "sync"]),
    default="replace",
    show_default=True,
    help="add: create only; replace: create and update; sync: also delete, for these Pids.",
)
_PIDS = click.option("--pids", metavar="P1,P2", help="Only these partners.")
_OVERLAY = click.option("--overlay", metavar="FILE", help="Stage values replacing the files'.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print plan and outcome as JSON.")
_DRY = click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")


def _pd_fail(as_json: bool, message: str, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        click.echo(json.dumps({"error": message, **(extra or {})}, indent=2))
        sys.exit(1)
    raise click.ClickException(message)


def _pd_errors() -> tuple[type[BaseException], ...]:
    from .pdcode.files import LayoutError
    from .pdcode.plan import MissingPassword
    from .pdcode.remote import RemoteError

    return (LayoutError, MissingPassword, RemoteError)


def _summary(counts: dict[str, int]) -> str:
    return (
        f"{counts['create']} to create, {counts['update']} to update, {counts['delete']} to delete"
    )


@pd.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_PIDS
@click.pass_obj
def pd_export(obj: Context, directory: Path, pids: str | None) -> None:
    """Write the local store's Partner Directory under DIRECTORY (one read transaction)."""
    from .pdcode import local

    settings = obj.settings()
    chosen = _pd_pids(pids)

    async def work(engine: Any) -> int:
        return await local.export(_pd_store(settings, engine), directory, chosen)

    try:
        count = run(settings, work)
    except _pd_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"exported {count} partners to {directory}")


@pd.command("import")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_DRY
@_MODE
@_PIDS
@_OVERLAY
@_JSON
@click.pass_obj
def pd_import(
    obj: Context,
    directory: Path,
    dry_run: bool,
    mode: str,
    pids: str | None,
    overlay: str | None,
    as_json: bool,
) -> None:
    """Make the local store hold what DIRECTORY says, in one transaction: all or nothing."""
    from .pdcode import local

    settings = obj.settings()
    chosen = _pd_pids(pids)

    def show(op: Any) -> None:
        if not as_json:
            click.echo(op.describe())

    async def work(engine: Any) -> Any:
        return await local.import_(
            _pd_store(settings, engine),
            directory,
            mode=mode,
            pids=chosen,
            overlay=_pd_overlay(overlay),
            dry_run=dry_run,
            on_op=show,
            keep_ops=as_json,
            actor=_actor(),
        )

    try:
        outcome = run(settings, work)
    except (*_pd_errors(), local.ImportRefused) as exc:
        _pd_fail(as_json, str(exc))
        return
    if as_json:
        document = {
            "plan": [op.as_json() for op in outcome.ops],
            "counts": outcome.counts,
            "applied": outcome.applied,
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        return
    done = "dry run, nothing changed" if dry_run else "applied in one transaction"
    if not any(outcome.counts.values()):
        done = "nothing to do"
    click.echo(f"{_summary(outcome.counts)}: {done}")


@pd.command("diff")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--against", metavar="URL", help="A remote /api/v1 instead of the local store.")
@_MODE
@_PIDS
@_OVERLAY
@_JSON
@_remote_options
@click.pass_obj
def pd_diff(
    obj: Context,
    directory: Path,
    against: str | None,
    mode: str,
    pids: str | None,
    overlay: str | None,
    as_json: bool,
    **remote: Any,
) -> None:
    """Print what import (or push to --against) would change; nothing when in step."""
    from .pdcode import local
    from .pdcode.sync import plan

    chosen = _pd_pids(pids)
    ops: list[Any] = []

    async def collect(target: Any) -> None:
        async for op in plan(directory, target, mode, pids=chosen, overlay=_pd_overlay(overlay)):
            ops.append(op)

    try:
        if against:
            remote_client = _pd_remote(against, remote)

            async def remote_work() -> None:
                async with remote_client:
                    await collect(remote_client)

            asyncio.run(remote_work())
        else:
            settings = obj.settings()

            async def work(engine: Any) -> None:
                async with local.read_transaction(_pd_store(settings, engine)) as d:
                    await collect(local.LocalTarget(d))

            run(settings, work)
    except _pd_errors() as exc:
        _pd_fail(as_json, str(exc))
        return
    if as_json:
        click.echo(json.dumps({"plan": [op.as_json() for op in ops]}, indent=2, ensure_ascii=False))
        return
    for op in ops:
        click.echo(op.describe())


@pd.command("pull")
@click.option("--from", "source", required=True, metavar="URL", help="The /api/v1 to read.")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@_PIDS
@_remote_options
def pd_pull(source: str, directory: Path, pids: str | None, **remote: Any) -> None:
    """Write a remote Partner Directory (any SAP-compatible /api/v1) under DIRECTORY."""
    from .pdcode import files

    chosen = _pd_pids(pids)
    client = _pd_remote(source, remote)

    async def work() -> int:
        async with client:
            partners = await client.everything(chosen)
            directory.mkdir(parents=True, exist_ok=True)
            for partner in partners:
                files.write_partner(directory, partner)
            if chosen is None:
                files.remove_stale(directory, {p.pid for p in partners})
                certificates = await client.certificates()
                if certificates is not None:
                    files.write_certificates(directory, certificates)
            return len(partners)

    try:
        count = asyncio.run(work())
    except _pd_errors() as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"pulled {count} partners into {directory}")


@pd.command("push")
@click.option("--to", "target", required=True, metavar="URL", help="The /api/v1 to change.")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_DRY
@_MODE
@_PIDS
@_OVERLAY
@_JSON
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1000),
    default=90,
    show_default=True,
    help="Operations per $batch change set.",
)
@_remote_options
def pd_push(
    target: str,
    directory: Path,
    dry_run: bool,
    mode: str,
    pids: str | None,
    overlay: str | None,
    as_json: bool,
    batch_size: int,
    **remote: Any,
) -> None:
    """Make a remote /api/v1 hold what DIRECTORY says, in $batch change sets."""
    from .pdcode.sync import plan

    chosen = _pd_pids(pids)
    client = _pd_remote(target, {**remote, "batch_size": batch_size})

    async def work() -> tuple[list[Any], Any]:
        async with client:
            ops = [
                op
                async for op in plan(
                    directory, client, mode, pids=chosen, overlay=_pd_overlay(overlay)
                )
            ]
            if dry_run or not ops:
                return ops, None
            return ops, await client.push(ops)

    try:
        ops, result = asyncio.run(work())
    except _pd_errors() as exc:
        _pd_fail(as_json, str(exc))
        return
    counts = {"create": 0, "update": 0, "delete": 0}
    for op in ops:
        counts[op.action] += 1
    sets = [] if result is None else result.change_sets
    failed = None if result is None else result.failed
    if as_json:
        document = {
            "plan": [op.as_json() for op in ops],
            "counts": counts,
            "changeSets": [
                {
                    "number": c.number,
                    "operations": len(c.ops),
                    "applied": c.applied,
                    "error": c.error,
                }  # fmt: skip
                for c in sets
            ],
            "applied": result is not None and failed is None,
        }
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
        if failed is not None:
            sys.exit(1)
        return
    for op in ops:
        click.echo(op.describe())
    if dry_run:
        click.echo(f"{_summary(counts)}: dry run, nothing changed")
    elif not ops:
        click.echo("nothing to do")
    elif failed is None:
        click.echo(f"{_summary(counts)}: applied in {len(sets)} change sets")
    else:
        applied = [c.number for c in sets if c.applied]
        click.echo(
            f"change set {failed.number} of {len(client.change_sets(ops))} failed: {failed.error}",
            err=True,
        )
        click.echo(
            f"applied change sets: {', '.join(map(str, applied)) or 'none'}; "
            "later change sets were not sent",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
