"""``xslt``: map the body with a stylesheet from a file or from the Partner Directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from lxml import etree

from ..errors import FlowError, misconfigured
from ..exchange import Exchange, Reply
from ..pduri import PdUri, parse_pd_uri
from ..services import Services
from ..spec import Spec, line_of
from ..values import Template, parse_template, template_of
from .base import LoadContext, Step, time_limit_of


@dataclass
class XsltStep(Step):
    kind = "xslt"
    file: Path | None
    pd: Template | None
    params: dict[str, Template]
    time_limit: float | None = None

    @classmethod
    def parse(cls, node: yaml.Node, what: str, context: LoadContext) -> Step:
        params: dict[str, Template] = {}
        time_limit = context.time_limit
        if isinstance(node, yaml.ScalarNode):
            text, text_node = str(node.value), node
        else:
            spec = Spec(node, what)
            spec.only(("stylesheet", "params", "time-limit"))
            time_limit = time_limit_of(spec, context)
            text, text_node = spec.text("stylesheet"), spec.required("stylesheet")
            if (param_spec := spec.mapping("params")) is not None:
                params = {name: template_of(param_spec, name) for name in param_spec}
        if text.startswith("pd:"):
            reference = parse_template(text, what, text_node)
            if reference.is_literal:
                _pd_uri(text, what, text_node)
            return cls(None, reference, params, time_limit)
        path = context.resolve(text)
        try:
            etree.parse(str(path), etree.XMLParser(resolve_entities=False, no_network=True))
        except OSError:
            raise FlowError(
                f"{what}: stylesheet {text} not found", line=line_of(text_node)
            ) from None
        except etree.XMLSyntaxError as exc:
            raise FlowError(
                f"{what}: stylesheet {text} is not well-formed XML ({exc})",
                line=line_of(text_node),
            ) from None
        return cls(path, None, params, time_limit)

    async def run(self, exchange: Exchange, services: Services) -> Reply | None:
        stylesheet: Path | PdUri
        if self.file is not None:
            stylesheet = self.file
        else:
            assert self.pd is not None
            text = self.pd.render(exchange)
            try:
                stylesheet = parse_pd_uri(text, "Binary")
            except ValueError as exc:
                raise misconfigured(f"the stylesheet reference is not usable: {exc}") from None
        params = {name: t.render(exchange) for name, t in self.params.items()}
        result = await services.xslt.transform(
            stylesheet, exchange, params, time_limit=self.time_limit or services.time_limit
        )
        exchange.body = result.body
        exchange.headers.update(result.headers)
        exchange.properties.update(result.properties)
        return None


def _pd_uri(text: str, what: str, node: yaml.Node) -> PdUri:
    try:
        return parse_pd_uri(text, "Binary")
    except ValueError as exc:
        raise FlowError(f"{what}: {exc}", line=line_of(node)) from None
