"""``authorize-partner``: the partner a message claims to come from must be the one who sent it.

SAP leaves this check to a script in each flow ("Partner Authorization (Inbound)"): map
``SapAuthenticatedUserName`` to a Pid through the authorised users, compare it with the
sender the message names (possibly an alternative partner id), refuse on mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from ..errors import forbidden
from ..exchange import AUTHENTICATED_USER, Exchange, Reply
from ..services import Services
from ..spec import Spec
from ..values import Template, parse_template, template_of
from .base import LoadContext, Step
from .set import assign, parse_target


@dataclass
class AuthorizePartnerStep(Step):
    kind = "authorize-partner"
    claimed: Template | None
    user: Template
    claimed_as: tuple[Template, Template] | None
    target: tuple[str, str] | None

    @classmethod
    def parse(cls, node: yaml.Node, what: str, context: LoadContext) -> Step:
        default_user = Template(f"${{header.{AUTHENTICATED_USER}}}")
        if isinstance(node, yaml.ScalarNode):
            text = str(node.value)
            claimed = parse_template(text, what, node) if text.strip() else None
            return cls(claimed, default_user, None, None)
        spec = Spec(node, what)
        spec.only(("claimed", "claimed-as", "user", "set"))
        claimed = template_of(spec, "claimed") if "claimed" in spec else None
        user = template_of(spec, "user") if "user" in spec else default_user
        claimed_as = None
        if (alternative := spec.mapping("claimed-as")) is not None:
            alternative.only(("agency", "scheme"))
            claimed_as = (template_of(alternative, "agency"), template_of(alternative, "scheme"))
        target = (
            parse_target(spec.text("set"), what, spec.line_of("set")) if "set" in spec else None
        )
        return cls(claimed, user, claimed_as, target)

    async def run(self, exchange: Exchange, services: Services) -> Reply | None:
        directory = services.directory
        user = self.user.render(exchange)
        if not user:
            raise forbidden("the message has no authenticated user")
        pid = await directory.get_partner_id_of_authorized_user(user)
        if pid is None:
            raise forbidden(f"user {user} is not an authorized user of any partner")
        claimed = self.claimed.render(exchange).strip() if self.claimed is not None else ""
        if claimed:
            claimed_pid: str | None = claimed
            if self.claimed_as is not None:
                agency, scheme = (t.render(exchange) for t in self.claimed_as)
                claimed_pid = await directory.get_partner_id(agency, scheme, claimed)
                if claimed_pid is None:
                    raise forbidden(
                        f"the message names sender {claimed}, which is no known partner "
                        f"(agency {agency}, {scheme})"
                    )
            if claimed_pid != pid:
                raise forbidden(
                    f"the message names sender {claimed}, but user {user} sends for partner {pid}"
                )
        exchange.sender_partner = pid
        exchange.note(f"user {user} sends for partner {pid}")
        if self.target is not None:
            assign(exchange, self.target, pid)
        return None
