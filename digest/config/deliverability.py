"""The ``deliverability`` section: what ``digest check --deliverability`` asks the DNS about.

Kept beside the main schema so the sending-domain checks carry their own options: which
resolver to ask (tests point it at a server on loopback), which DKIM selectors to look up,
and where SPF is evaluated when the provider uses a return-path subdomain.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DeliverabilityConfig(BaseModel):
    """The sending domain's DNS checks (``digest check --deliverability``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    nameservers: list[str] = Field(
        default_factory=list,
        description="IP addresses of the DNS servers to ask. Empty: the system's resolver.",
    )
    dns_port: int = Field(default=53, ge=1, le=65535, description="Their port.")
    dns_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for an answer to one question."
    )
    dns_budget: float = Field(
        default=20.0,
        gt=0,
        description="Seconds one run may spend asking the DNS in all; past it the "
        "remaining questions are reported unanswered instead of waited for.",
    )
    dkim_selectors: list[str] | None = Field(
        default=None,
        description="DKIM selectors to look up under <selector>._domainkey.<from domain>. "
        "Unset: the provider's default selectors (smtp: provider.dkim_selector).",
    )
    return_path_domain: str | None = Field(
        default=None,
        description="The domain SPF is evaluated for (the envelope sender's, e.g. "
        "send.example.com). Unset: the From address's domain.",
    )
    spf_include: str | None = Field(
        default=None,
        description="The SPF include that authorises your provider. Unset: the provider's "
        "documented one (none for smtp: your relay's own).",
    )
