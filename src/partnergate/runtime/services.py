"""What steps reach beyond the message: the Partner Directory, XSLT and receivers."""

from __future__ import annotations

from dataclasses import dataclass

from .directory import PartnerDirectory
from .receivers import ReceiverPool
from .xslt import XsltEngine


@dataclass
class Services:
    directory: PartnerDirectory
    xslt: XsltEngine
    receivers: ReceiverPool
    time_limit: float = 10.0
    """Seconds an xslt or script step may run unless its flow or the step says otherwise."""
