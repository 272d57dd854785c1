"""SOAP envelopes for ``/cxf/...`` endpoints, as SAP's SOAP (CXF) sender adapter handles them.

A flow sees the payload (the first element of ``soap:Body``), never the envelope; the
reply goes back in an envelope of the version the sender used, and a failed message as a
SOAP fault. A ``/cxf/`` endpoint also takes plain XML (as flows calling each other send it)
and then answers plain XML.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from lxml import etree

from ..security import xmldoor

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
CONTENT_TYPES = {SOAP11: "text/xml; charset=utf-8", SOAP12: "application/soap+xml; charset=utf-8"}


class SoapError(ValueError):
    """An envelope without a body, with no payload in it, or refused by the XML door."""


@dataclass(frozen=True)
class Unwrapped:
    payload: bytes
    version: str | None
    """The envelope namespace, or None when the message was not a SOAP envelope."""


def unwrap(body: bytes) -> Unwrapped:
    """Take the payload out of a SOAP envelope; anything else passes through unchanged.

    The body passes the XML door: a DOCTYPE, nesting too deep or an unknown encoding is
    refused here; a body that is not XML at all goes on to the flow as it is.
    """
    try:
        root = xmldoor.parse(body, what="the message")
    except xmldoor.XmlRefused as exc:
        if exc.kind == "syntax":
            return Unwrapped(body, None)
        raise SoapError(exc.reason) from None
    namespace = etree.QName(root).namespace
    if etree.QName(root).localname != "Envelope" or namespace not in (SOAP11, SOAP12):
        return Unwrapped(body, None)
    soap_body = root.find(f"{{{namespace}}}Body")
    if soap_body is None:
        raise SoapError("the SOAP envelope has no Body")
    children = [c for c in soap_body if isinstance(c.tag, str)]
    if not children:
        raise SoapError("the SOAP Body is empty")
    return Unwrapped(etree.tostring(children[0]), namespace)


def wrap(payload: bytes, version: str) -> bytes:
    """Put a reply payload (XML, or text which is escaped) into an envelope."""
    try:
        element = xmldoor.parse(payload, what="the reply")
        inner = etree.tostring(element).decode()
    except xmldoor.XmlRefused:
        inner = escape(payload.decode("utf-8", "replace"))
    return wrap_raw(inner, version)


def wrap_raw(inner: str, version: str) -> bytes:
    envelope = f'<soap:Envelope xmlns:soap="{version}"><soap:Body>{inner}</soap:Body>'
    return (envelope + "</soap:Envelope>").encode()


def fault(text: str, version: str, *, sender_fault: bool) -> bytes:
    """A SOAP fault; ``sender_fault`` picks Client/Sender over Server/Receiver."""
    message = escape(text)
    if version == SOAP11:
        code = "soap:Client" if sender_fault else "soap:Server"
        body = (
            f"<soap:Fault><faultcode>{code}</faultcode>"
            f"<faultstring>{message}</faultstring></soap:Fault>"
        )
    else:
        code = "soap:Sender" if sender_fault else "soap:Receiver"
        body = (
            f"<soap:Fault><soap:Code><soap:Value>{code}</soap:Value></soap:Code>"
            f'<soap:Reason><soap:Text xml:lang="en">{message}</soap:Text></soap:Reason>'
            "</soap:Fault>"
        )
    return wrap_raw(body, version)
