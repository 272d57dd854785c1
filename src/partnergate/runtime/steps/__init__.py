"""The step kinds a flow can use, by the key that names them in YAML."""

from __future__ import annotations

from .attachment import LogAttachmentStep
from .authorize import AuthorizePartnerStep
from .base import LoadContext, Step
from .call import CallStep
from .content import BodyStep, ReplyStep
from .customheader import CustomHeaderStep
from .script import ScriptStep
from .set import RemoveStep, SetStep
from .xslt import XsltStep

STEP_KINDS: dict[str, type[Step]] = {
    kind.kind: kind
    for kind in (
        SetStep,
        RemoveStep,
        AuthorizePartnerStep,
        XsltStep,
        BodyStep,
        ScriptStep,
        CallStep,
        LogAttachmentStep,
        CustomHeaderStep,
        ReplyStep,
    )
}

__all__ = ["STEP_KINDS", "LoadContext", "Step"]
