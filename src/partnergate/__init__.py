"""partnergate: a self-hosted Partner Directory and B2B gateway."""

__version__ = "0.1.0"
