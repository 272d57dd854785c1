"""Pull from one partnergate (HTTPS, OAuth), push into another (Basic): SAP's wire protocol."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from pathlib import Path

from ..conftest import ADMIN_ROLE, Api, Server, cli, free_port
from .conftest import SECRET, content, fill, tree


def _tenant(servers: Callable[..., Server], pki: Path) -> tuple[Server, list[str], dict[str, str]]:
    """A server reached over HTTPS with an OAuth client, as an SAP tenant would be."""
    port = free_port()
    server = servers(
        {
            "PARTNERGATE_HTTPS": f"127.0.0.1:{port}",
            "PARTNERGATE_TLS_CERT": str(pki / "server-chain.pem"),
            "PARTNERGATE_TLS_KEY": str(pki / "server.key"),
        }
    )
    secret = secrets.token_urlsafe(16)
    server.add_client("pd_pipeline", secret, ADMIN_ROLE)
    base = f"https://127.0.0.1:{port}"
    args = [
        f"{base}/api/v1",
        "--token-url",
        f"{base}/oauth/token",
        "--client-id",
        "pd_pipeline",
        "--client-secret-env",
        "PD_CLIENT_SECRET",
        "--ca-file",
        str(pki / "ca.crt"),
    ]
    return server, args, {"PD_CLIENT_SECRET": secret}


def _basic(server: Server) -> tuple[list[str], dict[str, str]]:
    return (
        [server.api, "--user", server.admin[0], "--password-env", "PD_TARGET_PASSWORD"],
        {"PD_TARGET_PASSWORD": server.admin[1]},
    )


def _pd(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    done = cli("pd", *args, env=env)
    return done.returncode, done.stdout, done.stderr


def test_pull_over_https_with_oauth_then_push_leaves_nothing_to_diff(
    servers: Callable[..., Server], pki: Path, tmp_path: Path
) -> None:
    source, source_args, source_env = _tenant(servers, pki)
    with Api(source) as api:
        fill(api, pki)
        wanted = content(api)
    target = servers()
    target_args, target_env = _basic(target)
    env = {**source.env, **source_env, **target_env, "PD_PASSWORD": SECRET}

    folder = tmp_path / "pd"
    code, out, err = _pd(env, "pull", "--from", *source_args, str(folder))
    assert code == 0, err
    assert "pulled 4 partners" in out
    local = tmp_path / "local"
    assert source.cli("pd", "export", str(local)).returncode == 0
    assert tree(folder) == tree(local), "a pull writes what an export writes"

    for path in folder.glob("*/UserCredentials.yaml"):
        path.write_text(
            path.read_text().replace("\n  User:", "\n  Password: env:PD_PASSWORD\n  User:")
        )

    code, out, err = _pd(env, "diff", str(folder), "--against", *target_args)
    assert code == 0 and "create StringParameters(Pid=Receiver_1,Id=ADDRESS)" in out, err
    code, out, err = _pd(env, "push", "--to", *target_args, str(folder), "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["applied"] is True
    assert all(c["applied"] for c in report["changeSets"])
    assert report["counts"]["create"] == len(report["plan"]) > 20

    code, out, err = _pd(env, "diff", str(folder), "--against", *target_args)
    assert (code, out) == (0, ""), out + err
    with Api(target) as api:
        assert content(api) == wanted
    everything = out + err + source.log() + target.log() + json.dumps(report)
    assert SECRET not in everything
    assert all(SECRET.encode() not in data for data in tree(folder).values())


def _strings(api: Api, pid: str) -> dict[str, str]:
    rows = api.get("StringParameters", params={"$filter": f"Pid eq '{pid}'"}).json()["d"]
    return {r["Id"]: r["Value"] for r in rows["results"]}


def test_modes_and_dry_run(servers: Callable[..., Server], tmp_path: Path) -> None:
    target = servers()
    args, env = _basic(target)
    env = {**target.env, **env}
    with Api(target) as api:
        for id_, value in {"KEEP": "same", "CHANGE": "old", "GONE": "x"}.items():
            api.post("StringParameters", json={"Pid": "P1", "Id": id_, "Value": value})
        api.post("StringParameters", json={"Pid": "Elsewhere", "Id": "A", "Value": "untouched"})
    folder = tmp_path / "pd"
    (folder / "P1").mkdir(parents=True)
    (folder / "P1" / "String.properties").write_text("KEEP=same\nCHANGE=new\nNEW=added\n")

    code, out, _ = _pd(env, "push", "--to", *args, str(folder), "--mode", "sync", "--dry-run")
    assert code == 0
    assert out.splitlines() == [
        "delete StringParameters(Pid=P1,Id=GONE)",
        "update StringParameters(Pid=P1,Id=CHANGE) Value=old -> new",
        "create StringParameters(Pid=P1,Id=NEW) Value=added",
        "1 to create, 1 to update, 1 to delete: dry run, nothing changed",
    ]
    with Api(target) as api:
        assert _strings(api, "P1") == {"KEEP": "same", "CHANGE": "old", "GONE": "x"}

    code, out, _ = _pd(env, "push", "--to", *args, str(folder), "--mode", "add")
    assert code == 0 and "1 to create, 0 to update, 0 to delete" in out
    with Api(target) as api:
        assert _strings(api, "P1") == {"KEEP": "same", "CHANGE": "old", "GONE": "x", "NEW": "added"}

    code, out, _ = _pd(env, "push", "--to", *args, str(folder))  # replace is the default
    assert code == 0 and "0 to create, 1 to update, 0 to delete" in out
    with Api(target) as api:
        assert _strings(api, "P1") == {"KEEP": "same", "CHANGE": "new", "GONE": "x", "NEW": "added"}

    code, out, _ = _pd(env, "push", "--to", *args, str(folder), "--mode", "sync")
    assert code == 0 and "0 to create, 0 to update, 1 to delete" in out
    with Api(target) as api:
        assert _strings(api, "P1") == {"KEEP": "same", "CHANGE": "new", "NEW": "added"}
        assert _strings(api, "Elsewhere") == {"A": "untouched"}, "sync touches only its Pids"
    code, out, _ = _pd(env, "diff", str(folder), "--against", *args, "--mode", "sync")
    assert (code, out) == (0, "")
    code, out, _ = _pd(env, "push", "--to", *args, str(folder), "--mode", "sync")
    assert code == 0 and out == "nothing to do\n"


def test_a_failing_change_set_reports_the_ones_applied(
    servers: Callable[..., Server], tmp_path: Path
) -> None:
    target = servers()
    args, env = _basic(target)
    env = {**target.env, **env}
    with Api(target) as api:
        taken = {"Agency": "Buyer", "Scheme": "GLN", "Id": "old", "Pid": "P3"}
        assert api.post("AlternativePartners", json=taken).status_code == 201
    folder = tmp_path / "pd"
    for pid in ("P1", "P2", "P4"):
        (folder / pid).mkdir(parents=True)
        (folder / pid / "String.properties").write_text("A=1\nB=2\n")
    (folder / "P3").mkdir()
    # (Agency, Scheme, Pid) must be unique: this create fails on the target.
    (folder / "P3" / "AlternativePartners.yaml").write_text(
        "- Agency: Buyer\n  Id: new\n  Scheme: GLN\n"
    )
    code, out, err = _pd(env, "push", "--to", *args, str(folder), "--batch-size", "2")
    assert code == 1
    assert "change set 3 of 4 failed" in err and "(Agency, Scheme, Pid) must be unique" in err
    assert "applied change sets: 1, 2; later change sets were not sent" in err
    with Api(target) as api:
        assert _strings(api, "P1") == {"A": "1", "B": "2"}
        assert _strings(api, "P2") == {"A": "1", "B": "2"}
        assert _strings(api, "P4") == {}
        alternatives = api.get("AlternativePartners").json()["d"]["results"]
        assert [a["Id"] for a in alternatives] == ["old"]

    code, out, _ = _pd(env, "push", "--to", *args, str(folder), "--batch-size", "2", "--json")
    assert code == 1
    report = json.loads(out)
    assert [(c["number"], c["applied"]) for c in report["changeSets"]] == [(1, False)]
    assert report["applied"] is False


def test_usage_errors_exit_2(tmp_path: Path, servers: Callable[..., Server]) -> None:
    target = servers()
    code, _, err = _pd(target.env, "push", "--to", target.api, str(tmp_path), "--mode", "all")
    assert code == 2 and "Invalid value for '--mode'" in err
    code, _, err = _pd(target.env, "push", "--to", target.api, str(tmp_path))
    assert code == 2 and "give --token-url and --client-id, or --user" in err
