"""Loading flows: a broken file is refused with file, line and step; the others load."""

from __future__ import annotations

from pathlib import Path

import pytest

from partnergate.runtime import FlowError, load_flow, load_flows

GOOD = """
flow: Good
endpoint: /http/good
steps:
  - set:
      property.A: x
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> FlowError:
    path = write(tmp_path, "bad.yaml", text)
    with pytest.raises(FlowError) as caught:
        load_flow(path)
    return caught.value


def test_a_folder_keeps_good_flows_and_reports_bad_ones(tmp_path: Path) -> None:
    write(tmp_path, "a_good.yaml", GOOD)
    write(tmp_path, "b_bad.yml", "endpoint: /http/bad\nsteps:\n  - sett: {}\n")
    write(tmp_path, "c_same_endpoint.yaml", GOOD.replace("Good", "Twin"))
    write(tmp_path, "notes.txt", "not a flow")
    flows = load_flows(tmp_path)
    assert [f.name for f in flows] == ["Good"]
    assert flows.find("/http/good/") is flows.flows["/http/good"]
    assert [str(e) for e in flows.errors] == [
        f"{tmp_path / 'b_bad.yml'}:3: step 1: unknown step kind 'sett'; a step is 'name' "
        "(optional) and one of: set, remove, authorize-partner, xslt, body, script, call, "
        "log-attachment, custom-header, reply",
        f"{tmp_path / 'c_same_endpoint.yaml'}:3: endpoint /http/good is already served by "
        f"{tmp_path / 'a_good.yaml'}",
    ]


def test_defaults(tmp_path: Path) -> None:
    flow = load_flow(
        write(tmp_path, "plain.yaml", "endpoint: /cxf/x/y\nsteps:\n  - remove: header.A\n")
    )
    assert (flow.name, flow.role, flow.method, flow.adapter) == (
        "plain",
        "ESBMessaging.send",
        "POST",
        "cxf",
    )
    assert flow.steps[0].label == "step 1 (remove)"


@pytest.mark.parametrize(
    ("text", "line", "step", "message"),
    [
        ("endpoint: /http/x\nsteps: [\n", 3, None, "not valid YAML"),
        ("", None, None, "the file is empty"),
        ("- a\n", 1, None, "the flow must be a mapping, not a list"),
        ("steps:\n  - set: {property.A: x}\n", 1, None, "the flow: 'endpoint' is required"),
        ("endpoint: /soap/x\nsteps: []\n", 1, None, "endpoint '/soap/x' must be /http/<path>"),
        ("endpoint: /http/x\nmethod: GET\nsteps: []\n", 2, None, "method must be POST"),
        ("endpoint: /http/x\nsteps: []\n", 2, None, "steps must be a list of at least one step"),
        ("endpoint: /http/x\nendpoint: /http/y\n", 2, None, "'endpoint' is given twice"),
        ("endpoint: /http/x\nrole: [a]\nsteps: []\n", 2, None, "'role' must be text"),
        (
            "endpoint: /http/x\nstep:\n  - set: {}\n",
            2,
            None,
            "unknown option 'step' (did you mean 'steps'?)",
        ),
        (
            "endpoint: /http/x\nsteps:\n  - name: read\n    set:\n"
            "      property.A: {xpath: '/a['}\n",
            5,
            "step 1 'read'",
            "set: 'property.A': XPath '/a['",
        ),
        (
            "endpoint: /http/x\nsteps:\n  - set:\n      property.A: {jsonpath: '$.['}\n",
            4,
            "step 1",
            "JSONPath '$.['",
        ),
        (
            "endpoint: /http/x\nsteps:\n  - set:\n      property.A: ok\n"
            "  - set:\n      head.A: x\n",
            6,
            "step 2",
            "'head.A' must be header.NAME or property.NAME",
        ),
        (
            "endpoint: /http/x\nsteps:\n  - body: 'Hi ${headers.x}'\n",
            3,
            "step 1",
            "unknown placeholder '${headers.x}'",
        ),
        (
            "endpoint: /http/x\nsteps:\n  - set:\n      property.A: {xpath: /a, jsonpath: $.a}\n",
            4,
            "step 1",
            "needs exactly one source",
        ),
        (
            "endpoint: /http/x\nsteps:\n  - call:\n      adress: http://x\n",
            4,
            "step 1",
            "call: unknown option 'adress' (did you mean 'address'?)",
        ),
        (
            "endpoint: /http/x\nsteps:\n  - call:\n      address: http://x\n      timeout: -1\n",
            5,
            "step 1",
            "'timeout' must be a number above 0",
        ),
        (
            "endpoint: /http/x\nsteps:\n  - call:\n      address: x\n"
            "      credentials: pd:R:USER:Binary\n",
            5,
            "step 1",
            "must end in :UserCredential",
        ),
        (
            "endpoint: /http/x\nsteps:\n  - reply: {status: 200}\n  - set: {property.A: x}\n",
            4,
            "step 2",
            "never runs: step 1 (reply) replies and ends the flow",
        ),
        (
            "endpoint: /http/x\nsteps:\n  - xslt: missing.xsl\n",
            3,
            "step 1",
            "stylesheet missing.xsl not found",
        ),
        ("endpoint: /http/x\nsteps:\n  - xslt: pd:P:x\n", 3, "step 1", "is not a pd: URI"),
        (
            "endpoint: /http/x\nsteps:\n  - script: missing.py\n",
            3,
            "step 1",
            "script missing.py not found",
        ),
        (
            "endpoint: /http/x\nsteps:\n  - name: a\n    reply: {}\n    body: x\n",
            3,
            "step 1 'a'",
            "a step is 'name' (optional) and one of",
        ),
    ],
)
def test_errors_name_file_line_and_step(
    tmp_path: Path, text: str, line: int | None, step: str | None, message: str
) -> None:
    error = error_of(tmp_path, text)
    assert error.file == str(tmp_path / "bad.yaml")
    assert (error.line, error.step) == (line, step)
    assert message in error.message, error.message


def test_script_errors(tmp_path: Path) -> None:
    write(tmp_path, "syntax.py", "def process(message, pd)\n    pass\n")
    write(tmp_path, "arity.py", "def process(message):\n    pass\n")
    write(tmp_path, "other.py", "def handle(message, pd):\n    pass\n")
    for script, message in [
        ("syntax.py", "script syntax.py line 1: expected ':'"),
        ("arity.py", "process() must take two arguments (message, pd)"),
        ("other.py", "script other.py defines no process()"),
    ]:
        error = error_of(tmp_path, f"endpoint: /http/x\nsteps:\n  - script: {script}\n")
        assert (error.line, error.step) == (3, "step 1")
        assert message in error.message
    write(
        tmp_path,
        "ok.yaml",
        "endpoint: /http/x\nsteps:\n  - script: {file: other.py, function: handle}\n",
    )
    assert load_flow(tmp_path / "ok.yaml").steps[0].label == "step 1 (script)"
