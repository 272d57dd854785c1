"""SAP's Message Processing Logs API as partnergate serves it, checked against SAP's
OpenAPI description (/work/shared/reference/sap-api/MessageProcessingLogs.openapi.json,
SAP API Business Hub "Message Processing Logs"): status, properties and their types."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from ..conftest import Api
from .conftest import Scenario, order, send

SPEC_PATH = Path(__file__).with_name("MessageProcessingLogs.openapi.json")
SPEC: dict[str, Any] = json.loads(SPEC_PATH.read_text())
DATE = re.compile(r"^/Date\(\d+\)/$")
NAVIGATION = ("CustomHeaderProperties", "ErrorInformation", "AdapterAttributes", "Attachments")
NOT_SERVED = {"MessageStoreEntries"}
"""SAP's navigation properties for features partnergate does not have (docs/compatibility.md)."""


def check(definition: str, entity: dict[str, Any]) -> None:
    """``entity`` carries every property of SAP's ``definition``, each of its type."""
    schema = SPEC["definitions"][f"com.sap.hci.api.{definition}"]["properties"]
    for name, prop in schema.items():
        if name in NOT_SERVED:
            continue
        assert name in entity, f"{definition}.{name} missing"
        value = entity[name]
        if "$ref" in prop:
            target = prop["$ref"].rsplit(".", 1)[-1]
            if target.startswith("MessageProcessingLog") and target != "MessageProcessingLog":
                assert isinstance(value, dict), f"{name}: {value!r}"
            elif target == "IntegrationArtifact":
                check("IntegrationArtifact", value)
            continue
        if prop.get("type") == "array":
            assert isinstance(value, dict) and ("__deferred" in value or "results" in value)
            continue
        kinds = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        if value is None:
            assert "null" in kinds, f"{definition}.{name} is null"
        elif prop.get("format") == "date-time":
            assert DATE.match(value), f"{name}: {value!r}"
        elif prop.get("format") == "int64":
            assert isinstance(value, str) and value.isdigit(), f"{name}: {value!r}"
        elif "boolean" in kinds:
            assert isinstance(value, bool)
        else:
            assert isinstance(value, str), f"{definition}.{name}: {value!r}"


def get(api: Api, path: str, **params: str) -> Any:
    r = api.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()["d"]


def test_the_spec_is_sap_s() -> None:
    assert SPEC["definitions"]["com.sap.hci.api.MessageProcessingLogErrorInformation"]


def test_entry_has_every_sap_property_and_deferred_links(scenario: Scenario) -> None:
    r = send(scenario, "Receiver_2")
    assert r.status_code == 200, r.text
    guid = r.headers["sap_messageprocessinglogid"]
    with Api(scenario.server) as api:
        entry = get(api, f"MessageProcessingLogs('{guid}')")
        check("MessageProcessingLog", entry)
        assert entry["IntegrationArtifact"]["Id"] == "Partner Directory sender"
        assert entry["IntegrationArtifact"]["Type"] == "INTEGRATION_FLOW"
        assert entry["ArchivingStatus"] == "NOT_RELEVANT"
        assert entry["LogLevel"] == "INFO"
        for name in (*NAVIGATION, "Runs"):
            uri = entry[name]["__deferred"]["uri"]
            assert uri.endswith(f"MessageProcessingLogs('{guid}')/{name}")
        listed = get(api, "MessageProcessingLogs", **{"$filter": f"MessageGuid eq '{guid}'"})
        check("MessageProcessingLog", listed["results"][0])
        # $select keeps to what is named, the complex value included
        picked = get(
            api, f"MessageProcessingLogs('{guid}')", **{"$select": "Status,IntegrationArtifact"}
        )
        assert set(picked) == {"__metadata", "Status", "IntegrationArtifact"}


def test_atom_entry_has_links_and_the_complex_value(scenario: Scenario) -> None:
    guid = send(scenario, "Receiver_2").headers["sap_messageprocessinglogid"]
    with Api(scenario.server) as api:
        r = api.get(
            f"MessageProcessingLogs('{guid}')",
            headers={"Accept": "application/atom+xml"},
            params={"$expand": "CustomHeaderProperties"},
        )
        assert r.status_code == 200, r.text
        root = etree.fromstring(r.content)
        ns = {"a": "http://www.w3.org/2005/Atom", "m": M, "d": D}
        rels = {link.get("title") for link in root.findall("a:link", ns)}
        assert {*NAVIGATION, "Runs"} <= rels
        artifact = root.find("a:content/m:properties/d:IntegrationArtifact", ns)
        assert artifact is not None and artifact.findtext("d:Type", namespaces=ns) == (
            "INTEGRATION_FLOW"
        )
        inline = root.find("a:link[@title='CustomHeaderProperties']/m:inline/a:feed", ns)
        assert inline is not None


M = "http://schemas.microsoft.com/ado/2007/08/dataservices/metadata"
D = "http://schemas.microsoft.com/ado/2007/08/dataservices"


def test_custom_header_properties_from_step_and_script(scenario: Scenario) -> None:
    number = f"PO-{time.time_ns()}"
    guid = order(scenario, number, "4012345000009")
    with Api(scenario.server) as api:
        found = get(api, f"MessageProcessingLogs('{guid}')/CustomHeaderProperties")["results"]
        for item in found:
            check("MessageProcessingLogCustomHeaderProperty", {**item, "Log": {}})
        pairs = [(p["Name"], p["Value"]) for p in found]
        assert pairs == [("OrderNumber", number), ("GLN", "4012345000009"), ("Buyer", "ACME Corp")]
        ordered = get(
            api,
            f"MessageProcessingLogs('{guid}')/CustomHeaderProperties",
            **{"$orderby": "Name", "$top": "2"},
        )["results"]
        assert [p["Name"] for p in ordered] == ["Buyer", "GLN"]
        one = get(api, f"MessageProcessingLogCustomHeaderProperties('{found[0]['Id']}')")
        assert one["Value"] == number
    # what the script logs names the message it works on, though it runs on a thread
    logged = [line for line in scenario.server.log().splitlines() if guid in line]
    assert any("orders.script: the buyer is kept" in line for line in logged), logged


def test_filter_custom_header_properties(scenario: Scenario) -> None:
    number = f"PO-{time.time_ns()}"
    wanted = order(scenario, number)
    order(scenario, number + "-other")
    with Api(scenario.server) as api:
        hits = get(
            api,
            "MessageProcessingLogs",
            filterCustomHeaderProperties=f"Name eq 'OrderNumber' and Value eq '{number}'",
        )["results"]
        assert [h["MessageGuid"] for h in hits] == [wanted]
        by_name = get(
            api,
            "MessageProcessingLogs",
            **{
                "filterCustomHeaderProperties": "Name eq 'OrderNumber'",
                "$filter": "IntegrationFlowName eq 'Orders'",
                "$inlinecount": "allpages",
            },
        )
        assert int(by_name["__count"]) >= 2
        counted = api.get(
            "MessageProcessingLogs/$count",
            params={
                "filterCustomHeaderProperties": f"Name eq 'OrderNumber' and Value eq '{number}'"
            },
        )
        assert counted.status_code == 200 and counted.text == "1"
        r = api.get("MessageProcessingLogs", params={"filterCustomHeaderProperties": "OrderNo"})
        assert r.status_code == 400
        assert "filterCustomHeaderProperties" in r.json()["error"]["message"]["value"]


def test_expand_on_entity_and_collection(scenario: Scenario) -> None:
    guid = order(scenario, f"PO-{time.time_ns()}")
    with Api(scenario.server) as api:
        entry = get(
            api,
            f"MessageProcessingLogs('{guid}')",
            **{"$expand": "CustomHeaderProperties,AdapterAttributes"},
        )
        assert [p["Name"] for p in entry["CustomHeaderProperties"]["results"]][0] == "OrderNumber"
        assert entry["AdapterAttributes"]["results"]
        assert "__deferred" in entry["ErrorInformation"]
        listed = get(
            api,
            "MessageProcessingLogs",
            **{"$expand": "CustomHeaderProperties", "$filter": f"MessageGuid eq '{guid}'"},
        )["results"]
        assert listed[0]["CustomHeaderProperties"]["results"]
        r = api.get("MessageProcessingLogs", params={"$expand": "Nonsense"})
        assert r.status_code == 400 and r.json()["error"]["message"]["value"]


def test_adapter_attributes_say_what_the_sender_adapter_saw(scenario: Scenario) -> None:
    guid = order(scenario, "PO-adapter")
    with Api(scenario.server) as api:
        found = get(api, f"MessageProcessingLogs('{guid}')/AdapterAttributes")["results"]
        for item in found:
            check("MessageProcessingLogAdapterAttribute", {**item, "MessageProcessingLog": {}})
        seen = {a["Name"]: a["Value"] for a in found}
        assert seen["AuthenticationKind"] == "basic"
        assert seen["ClientIp"] == "127.0.0.1"
        assert seen["Endpoint"] == "/http/orders"
        assert {a["AdapterId"] for a in found} == {"HTTPS Sender"}


def test_error_information_is_the_entity_and_its_value_the_text(scenario: Scenario) -> None:
    r = send(scenario, "Receiver_9")
    assert r.status_code == 404
    guid = r.headers["sap_messageprocessinglogid"]
    with Api(scenario.server) as api:
        entry = get(api, f"MessageProcessingLogs('{guid}')")
        assert entry["Status"] == "FAILED"
        assert entry["Receiver"] == "Receiver_9"  # named, though never called
        info = get(api, f"MessageProcessingLogs('{guid}')/ErrorInformation")
        check("MessageProcessingLogErrorInformation", info)
        assert info["MessageGuid"] == guid and info["Type"] == "text/plain"
        assert info["LastErrorModelStepId"] == "step 3 'look up the receiver'"
        text = api.get(f"MessageProcessingLogs('{guid}')/ErrorInformation/$value")
        assert text.headers["content-type"].startswith("text/plain")
        assert text.text.startswith("step 3 'look up the receiver': ")
        assert "step step" not in text.text
        assert "Receiver_9/ADDRESS" in text.text
        ok = send(scenario, "Receiver_2").headers["sap_messageprocessinglogid"]
        assert api.get(f"MessageProcessingLogs('{ok}')/ErrorInformation").status_code == 404
        none = api.get(f"MessageProcessingLogs('{ok}')/ErrorInformation/$value")
        assert none.status_code == 404 and none.json()["error"]["message"]["value"]
        assert api.get("MessageProcessingLogs('nope')/AdapterAttributes").status_code == 404


def test_runs_and_run_steps(scenario: Scenario) -> None:
    guid = send(scenario, "Receiver_2").headers["sap_messageprocessinglogid"]
    with Api(scenario.server) as api:
        runs = get(api, f"MessageProcessingLogs('{guid}')/Runs")["results"]
        assert len(runs) == 1 and runs[0]["OverallState"] == "COMPLETED"
        assert DATE.match(runs[0]["RunStart"])
        steps = get(api, f"MessageProcessingLogRuns('{runs[0]['Id']}')/RunSteps")["results"]
        assert [s["ChildCount"] for s in steps] == [1, 2, 3, 4, 5]
        assert [s["Activity"] for s in steps] == ["set", "authorize-partner", "set", "body", "call"]
        assert all(s["Status"] == "COMPLETED" and DATE.match(s["StepStart"]) for s in steps)
        assert "string parameter Receiver_2/ADDRESS found" in steps[2]["Summary"]
        assert "sends for partner Sender_OPS" in steps[1]["Summary"]
        call = steps[4]["Summary"]
        assert f"POST {scenario.server.url}/cxf/receiver_2" in call and "answered 200" in call
        assert int(steps[4]["DurationMicros"]) > 0
        one = get(api, f"MessageProcessingLogRunSteps(RunId='{guid}',ChildCount=5)")
        assert one["ModelStepId"] == "step 5 'call the receiver'"
        assert api.get("MessageProcessingLogRunSteps").status_code == 400


def test_correlation_joins_sender_and_receiver_messages(scenario: Scenario) -> None:
    guid = send(scenario, "Receiver_2").headers["sap_messageprocessinglogid"]
    with Api(scenario.server) as api:
        sender = get(api, f"MessageProcessingLogs('{guid}')")
        correlation = sender["CorrelationId"]
        both = get(
            api,
            "MessageProcessingLogs",
            **{"$filter": f"CorrelationId eq '{correlation}'", "$orderby": "LogStart"},
        )["results"]
        flows = sorted(e["IntegrationFlowName"] for e in both)
        assert flows == ["Partner Directory sender", "Receiver 2"]
        receiver = next(e for e in both if e["MessageGuid"] != guid)
        assert receiver["PreviousComponentName"] == "partnergate"
        attributes = get(
            api, f"MessageProcessingLogs('{receiver['MessageGuid']}')/AdapterAttributes"
        )
        seen = {a["Name"]: a["Value"] for a in attributes["results"]}
        assert seen["Endpoint"] == "/cxf/receiver_2"
        assert seen["AuthenticatedUser"] == "monitor_receiver_2"
        assert {a["AdapterId"] for a in attributes["results"]} == {"SOAP Sender"}


def test_metadata_declares_the_new_types_and_navigation(scenario: Scenario) -> None:
    with Api(scenario.server) as api:
        text = api.get("$metadata").text
    for name in (
        "MessageProcessingLogCustomHeaderProperty",
        "MessageProcessingLogAdapterAttribute",
        "MessageProcessingLogErrorInformation",
        "MessageProcessingLogRunStep",
        'ComplexType Name="IntegrationArtifact"',
        'NavigationProperty FromRole="MessageProcessingLog" Name="CustomHeaderProperties"',
    ):
        assert name in text


@pytest.mark.parametrize("path", ["MessageProcessingLogs('x')/CustomHeaderProperties"])
def test_logs_stay_read_only(scenario: Scenario, path: str) -> None:
    with Api(scenario.server) as api:
        assert api.post(path, json={"Name": "a", "Value": "b"}).status_code == 405


def test_options_below_a_log_are_honoured_or_refused(scenario: Scenario) -> None:
    """A message's few related entries take ``$orderby``, ``$skip``, ``$top`` and
    ``$inlinecount``; what is not offered there is 400, never silently ignored."""
    guid = order(scenario, f"PO-{time.time_ns()}")
    base = f"MessageProcessingLogs('{guid}')"
    with Api(scenario.server) as api:
        names = [a["Name"] for a in get(api, f"{base}/AdapterAttributes")["results"]]
        assert len(names) == 4
        paged = get(
            api,
            f"{base}/AdapterAttributes",
            **{"$orderby": "Name desc", "$skip": "1", "$top": "2", "$inlinecount": "allpages"},
        )
        assert [a["Name"] for a in paged["results"]] == sorted(names, reverse=True)[1:3]
        assert int(paged["__count"]) == 4
        counted = get(api, f"{base}/CustomHeaderProperties", **{"$inlinecount": "allpages"})
        assert int(counted["__count"]) == 2  # OrderNumber and Buyer: this order has no GLN
        steps = get(
            api,
            f"MessageProcessingLogRuns('{guid}')/RunSteps",
            **{"$orderby": "ChildCount desc", "$top": "2"},
        )["results"]
        assert [s["ChildCount"] for s in steps] == [3, 2]
        assert len(get(api, f"{base}/Runs", **{"$top": "0"})["results"]) == 0
        for path, params in [
            (f"{base}/AdapterAttributes", {"$filter": "Name eq 'Endpoint'"}),
            (f"{base}/Runs", {"$filter": "LogLevel eq 'INFO'"}),
            (f"MessageProcessingLogRuns('{guid}')/RunSteps", {"$filter": "Status eq 'FAILED'"}),
            (f"{base}/Runs", {"$expand": "RunSteps"}),
            (f"MessageProcessingLogRuns('{guid}')", {"$expand": "RunSteps"}),
            (f"{base}/AdapterAttributes", {"$orderby": "Nonsense"}),
            (f"MessageProcessingLogRuns('{guid}')", {"$top": "1"}),
            ("FlowLogLevels", {"$filter": "LogLevel eq 'TRACE'"}),
        ]:
            r = api.get(path, params=params)
            assert r.status_code == 400, (path, params, r.status_code, r.text)
            assert r.json()["error"]["message"]["value"]


def test_filter_and_order_by_the_properties_every_message_has_alike(scenario: Scenario) -> None:
    """SAP's constant and derived properties (``AlternateWebLink``, the ``Archiving*``
    fields, the component names) filter and order as they read, never a 500."""
    guid = send(scenario, "Receiver_2").headers["sap_messageprocessinglogid"]
    with Api(scenario.server) as api:
        for expression, hit in [
            (f"AlternateWebLink eq '/ui/monitor/{guid}'", True),
            ("startswith(AlternateWebLink, '/ui/monitor/')", True),
            ("ArchivingStatus eq 'NOT_RELEVANT'", True),
            ("ArchivingStatus ne 'NOT_RELEVANT'", False),
            ("ArchivingPersistedMessages eq 'false'", True),
            ("LocalComponentName eq 'partnergate'", True),
            ("OriginComponentName eq 'elsewhere'", False),
            ("PreviousComponentName eq null", True),  # the sender's message started it
            ("PreviousComponentName eq 'partnergate'", False),
        ]:
            found = get(
                api,
                "MessageProcessingLogs",
                **{"$filter": f"MessageGuid eq '{guid}' and ({expression})"},
            )["results"]
            assert bool(found) is hit, expression
        both = f"CorrelationId eq '{guid}'"
        joined = get(
            api,
            "MessageProcessingLogs",
            **{"$filter": f"{both} and PreviousComponentName eq 'partnergate'"},
        )["results"]
        assert [e["IntegrationFlowName"] for e in joined] == ["Receiver 2"]
        ordered = get(
            api,
            "MessageProcessingLogs",
            **{"$filter": both, "$orderby": "PreviousComponentName desc,AlternateWebLink"},
        )["results"]
        assert [e["PreviousComponentName"] for e in ordered] == ["partnergate", None]
        counted = api.get(
            "MessageProcessingLogs/$count",
            params={"$filter": f"{both} and LocalComponentName eq 'partnergate'"},
        )
        assert counted.status_code == 200 and counted.text == "2"


def test_sap_pipeline_steps_find_a_flows_newest_message_by_its_artifact(
    scenario: Scenario,
) -> None:
    """SAP's own CI step (Project Piper's ``integrationArtifactGetMplStatus``) asks for
    ``IntegrationArtifact/Id``, a member of the complex value; its other members filter
    and order as the entries show them, and a member that does not exist is a 400."""
    guid = send(scenario, "Receiver_2").headers["sap_messageprocessinglogid"]
    flow = "Partner Directory sender"
    with Api(scenario.server) as api:
        newest = get(
            api,
            "MessageProcessingLogs",
            **{
                "$filter": f"IntegrationArtifact/Id eq '{flow}' and Status ne 'DISCARDED'",
                "$orderby": "LogEnd desc",
                "$top": "1",
            },
        )["results"]
        assert [(e["MessageGuid"], e["Status"]) for e in newest] == [(guid, "COMPLETED")]
        assert newest[0]["IntegrationArtifact"]["Id"] == flow
        mine = f"CorrelationId eq '{guid}'"
        for expression, flows in [
            (f"IntegrationArtifact/Name eq '{flow}'", [flow]),
            ("IntegrationArtifact/Id ne 'Receiver 2'", [flow]),
            ("startswith(IntegrationArtifact/Name, 'Receiver')", ["Receiver 2"]),
            (
                "IntegrationArtifact/Type eq 'INTEGRATION_FLOW'",
                ["Partner Directory sender", "Receiver 2"],
            ),
            ("IntegrationArtifact/PackageId eq null", ["Partner Directory sender", "Receiver 2"]),
            ("IntegrationArtifact/PackageName ne null", []),
        ]:
            found = get(
                api,
                "MessageProcessingLogs",
                **{"$filter": f"{mine} and {expression}", "$orderby": "IntegrationArtifact/Id"},
            )["results"]
            assert [e["IntegrationFlowName"] for e in found] == flows, expression
        for wrong in (
            "IntegrationArtifact/Version eq '1'",
            "Status/Id eq 'x'",
            "IntegrationArtifact eq 'x'",
        ):
            r = api.get("MessageProcessingLogs", params={"$filter": wrong})
            assert r.status_code == 400, wrong
            assert "does not exist in MessageProcessingLog" in r.json()["error"]["message"]["value"]
