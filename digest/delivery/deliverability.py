"""Will this issue land in the inbox? One report from every check digest has.

:func:`issue_report` gathers, for one composed issue:

- ``dns``: the From domain's SPF, DKIM, DMARC, MX and BIMI (:mod:`digest.delivery.dns_checks`),
  every question cached and the run bounded in time (:class:`~dns_checks.RunLookup`);
- ``provider``: what the provider's API says of the domain and its DKIM
  (:meth:`Provider.domain_state`); a refused key or a provider that does not answer is a
  finding, never a crash and never a pass;
- ``presend``: the email checks that fail a build, the size against Gmail's clipping, the
  List-Unsubscribe headers, and the pre-send report (:mod:`digest.email.presend`);
- ``unsubscribe``: whether the List-Unsubscribe page answers at ``serve.public_url`` (a GET
  of the page with a sample token; never the one-click POST, which would unsubscribe);
- ``links``: every link and image of the issue fetched (:mod:`digest.email.linkcheck`).

Each :class:`Item` says what to publish or do. An item with status ``fail`` blocks a send:
:func:`gate` raises :class:`SendRefused` naming them, unless the operator overrides it
(``digest send --skip-checks``). The cheap part (no network: ``presend``) is what a real send
runs; ``send --dry-run``, ``check --deliverability`` and the preview run the rest too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Literal

import httpx

from digest.audience.links import public_base
from digest.config import Config, missing_secrets
from digest.config.providers import HttpSettings
from digest.delivery.dns_checks import DnsError, Lookup, check_config
from digest.delivery.issue import BuildComposer
from digest.delivery.providers.base import Provider
from digest.delivery.providers.registry import get_provider_class
from digest.email.checks import CheckResult, run_checks
from digest.email.message import ComposedEmail, fill, sample_values
from digest.email.presend import presend_checks
from digest.errors import DigestError, ProviderError

if TYPE_CHECKING:
    from digest.content.posts import Post
    from digest.email.build import BuildResult

log = logging.getLogger(__name__)

Status = Literal["ok", "warn", "fail", "info"]
Group = Literal["dns", "provider", "presend", "unsubscribe", "links"]

GMAIL_CLIP_BYTES = 102 * 1024
"""Gmail shows "[Message clipped]" past about 102 KB of HTML, hiding the footer (and the
unsubscribe link in it)."""
LOCAL_TRANSPORTS = ("outbox",)
"""Transports that mail nobody: no DNS or provider to ask."""
PROVIDER_TIMEOUT = 10.0  # seconds per request to the provider's domain endpoints
PROVIDER_RETRIES = 1
UNSUBSCRIBE_TIMEOUT = 5.0
UNSUBSCRIBE_REDIRECTS = 3


class SendRefused(DigestError):
    """A pre-send check failed: nothing was sent, nothing recorded."""


@dataclass(frozen=True)
class Item:
    """One finding: ``action`` says what to publish or do when it is not ok."""

    group: Group
    name: str
    status: Status
    detail: str
    action: str | None = None

    @property
    def blocking(self) -> bool:
        return self.status == "fail"

    def line(self) -> str:
        mark = {"ok": "ok", "warn": "warning", "fail": "FAILED", "info": "info"}[self.status]
        return f"{self.group} {self.name}: {mark}: {self.detail}"


@dataclass
class DeliverabilityReport:
    """Every finding for one issue, in the order above."""

    issue_id: str
    domain: str
    provider: str
    items: list[Item] = field(default_factory=list)

    @property
    def blocking(self) -> list[Item]:
        return [i for i in self.items if i.blocking]

    @property
    def ok(self) -> bool:
        return not self.blocking

    def group(self, name: str) -> list[Item]:
        return [i for i in self.items if i.group == name]

    def as_dict(self) -> dict[str, object]:
        return {
            "issue_id": self.issue_id,
            "domain": self.domain,
            "provider": self.provider,
            "items": [asdict(i) for i in self.items],
            "blocking": len(self.blocking),
            "ok": self.ok,
        }


def from_domain(config: Config) -> str:
    return config.sender.from_email.rsplit("@", 1)[1].lower()


# --- DNS and the provider ----------------------------------------------------------------


def dns_items(config: Config, lookup: Lookup | None = None) -> list[Item]:
    """The DNS rules, as items; a resolver that does not answer is one failed item."""
    try:
        report = check_config(config, lookup)
    except DnsError as exc:
        return [
            Item(
                "dns",
                "resolver",
                "fail",
                str(exc),
                "check deliverability.nameservers / dns_timeout, or run again when the "
                "resolver answers",
            )
        ]
    items = []
    for finding in report.findings:
        if finding.ok:
            status: Status = "info" if finding.severity == "info" else "ok"
        else:
            status = "fail" if finding.failed else "warn"
        action = f"publish {finding.publish}" if finding.publish and not finding.ok else None
        items.append(Item("dns", f"{finding.rule} {finding.name}", status, finding.detail, action))
    return items


def provider_items(config: Config) -> list[Item]:
    """What the provider's API says of the From domain (read-only requests)."""
    name = config.provider.name
    unset = [ref.env_var for key, ref in missing_secrets(config) if key.startswith("provider.")]
    if unset:
        return [
            Item(
                "provider",
                "credentials",
                "warn",
                f"{name} not asked: {', '.join(unset)} not set",
                f"export {', '.join(unset)} to let digest ask {name} about the domain",
            )
        ]
    domain = from_domain(config)
    try:
        transport = _bounded_provider(config)
    except DigestError as exc:
        return [
            Item("provider", "connection", "fail", f"{name}: {exc}", "fix the provider's settings")
        ]
    try:
        findings = transport.domain_state(domain)
    except ProviderError as exc:
        if exc.status in (401, 403):
            return [
                Item(
                    "provider",
                    "credentials",
                    "fail",
                    f"{name} refused the credentials: {exc}",
                    "check the API key or token in the provider section of config.yaml",
                )
            ]
        return [
            Item(
                "provider",
                "connection",
                "fail",
                f"could not ask {name} about {domain}: {exc}",
                "run again when the provider answers (its status page says whether it is down)",
            )
        ]
    except DigestError as exc:
        return [Item("provider", "connection", "fail", f"could not ask {name}: {exc}", "run again")]
    finally:
        transport.close()
    items = []
    for finding in findings:
        status: Status = "info" if not finding.checked else ("ok" if finding.ok else "fail")
        action = f"publish {finding.publish}" if finding.publish and not finding.ok else None
        items.append(Item("provider", finding.rule, status, finding.detail, action))
    return items


def _bounded_provider(config: Config) -> Provider:
    """The configured provider, asking at most twice with a short timeout: a check must
    not wait out a send's retries on a provider that does not answer."""
    kind: type[Provider] = get_provider_class(config.provider.name)
    settings = kind.Settings.model_validate(config.provider.options())
    if isinstance(settings, HttpSettings):
        settings = settings.model_copy(
            update={
                "max_retries": min(settings.max_retries, PROVIDER_RETRIES),
                "timeout": min(settings.timeout, PROVIDER_TIMEOUT),
            }
        )
    return kind(settings, config)


# --- the composed email ------------------------------------------------------------------


def _from_check(check: CheckResult) -> Item:
    if check.ok:
        return Item("presend", check.name, "ok", check.summary)
    status: Status = "warn" if check.level == "warning" else "fail"
    detail = "; ".join([check.summary, *check.problems])
    return Item("presend", check.name, status, detail, check.fix or None)


def _unsubscribe_url(config: Config, composed: ComposedEmail) -> str | None:
    header = fill(composed.headers.get("List-Unsubscribe", ""), sample_values(config))
    found = re.search(r"<(https?://[^>]+)>", header)
    return found.group(1) if found else None


def presend_items(
    config: Config,
    composed: ComposedEmail,
    checks: Sequence[CheckResult] | None = None,
    image_bytes: dict[str, int] | None = None,
) -> list[Item]:
    """The cheap checks (no network): what a real send runs before it starts."""
    size = composed.sent_size or composed.html_size
    items = [
        Item("presend", "gmail-clip", "ok", f"{size / 1024:.1f} KB of HTML, under Gmail's 102 KB")
        if size <= GMAIL_CLIP_BYTES
        else Item(
            "presend",
            "gmail-clip",
            "fail",
            f"{size / 1024:.1f} KB of HTML: Gmail clips past 102 KB and hides the footer "
            "with the unsubscribe link",
            "send fewer posts (limits.max_posts) or shorter excerpts",
        )
    ]
    url = _unsubscribe_url(config, composed)
    one_click = composed.headers.get("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    if url and url.startswith("https://") and one_click:
        items.append(Item("presend", "list-unsubscribe", "ok", f"one-click, e.g. {url}"))
    elif url and _loopback(url) and one_click:
        items.append(
            Item(
                "presend",
                "list-unsubscribe",
                "warn",
                f"one-click, plain http on this machine (fine for testing only): {url}",
                "set serve.public_url to the public https address before sending for real",
            )
        )
    else:
        items.append(
            Item(
                "presend",
                "list-unsubscribe",
                "fail",
                "no https List-Unsubscribe with List-Unsubscribe-Post: One-Click "
                f"(found {url or 'none'})",
                "set serve.public_url to the https address of `digest serve`",
            )
        )
    items += [_from_check(c) for c in (run_checks(composed) if checks is None else checks)]
    items += [
        _from_check(c) if c.ok else Item("presend", c.name, "warn", c.summary, c.fix or None)
        for c in presend_checks(composed, config.sender.postal_address, image_bytes)
    ]
    return items


def unsubscribe_item(
    config: Config, composed: ComposedEmail, *, client: httpx.Client | None = None
) -> Item:
    """GET the List-Unsubscribe page (a sample token; never the one-click POST)."""
    url = _unsubscribe_url(config, composed)
    if url is None or (not url.startswith("https://") and not _loopback(url)):
        return Item(
            "unsubscribe",
            "reachable",
            "fail",
            f"no https List-Unsubscribe address to ask (found {url or 'none'})",
            "set serve.public_url to the https address of `digest serve`",
        )
    own = client is None
    client = client or httpx.Client(
        timeout=UNSUBSCRIBE_TIMEOUT,
        follow_redirects=True,
        max_redirects=UNSUBSCRIBE_REDIRECTS,
        headers={"User-Agent": "digest-deliverability"},
    )
    fix = f"start `digest serve` where serve.public_url points ({public_base(config)})"
    # On this machine (plain http on loopback) a page that does not answer is for testing
    # only: a warning. A public address that does not answer fails.
    bad: Status = "warn" if _loopback(url) else "fail"
    try:
        response = client.get(url)
    except httpx.TooManyRedirects:
        return Item("unsubscribe", "reachable", bad, f"{url}: redirects in a loop", fix)
    except httpx.TimeoutException:
        detail = f"{url}: no answer within {UNSUBSCRIBE_TIMEOUT:g} s"
        return Item("unsubscribe", "reachable", bad, detail, fix)
    except httpx.HTTPError as exc:
        detail = f"{url}: cannot connect ({type(exc).__name__}: {exc})"
        return Item("unsubscribe", "reachable", bad, detail, fix)
    finally:
        if own:
            client.close()
    status = response.status_code
    if status < 300:
        return Item("unsubscribe", "reachable", "ok", f"{url}: HTTP {status}")
    if status == 400:  # `digest serve` refuses a token it did not sign: the route is there
        return Item(
            "unsubscribe",
            "reachable",
            "ok",
            f"{url}: HTTP 400 to a sample token (refused as any unsigned token is): served",
        )
    return Item("unsubscribe", "reachable", bad, f"{url}: HTTP {status}", fix)


def _loopback(url: str) -> bool:
    return url.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))


def link_items(
    config: Config, html: str, posts: Iterable[Post], *, now: float
) -> tuple[list[Item], dict[str, int]]:
    """Every link and image fetched; one item for the count, one per broken target; and
    each image's size in bytes, where its server said."""
    from digest.email.linkcheck import broken, check_issue

    found, outcomes = check_issue(config, html, posts, now=now)
    sizes = {
        t.url: n for t in found if t.kind == "image" and (n := outcomes[t.url].length) is not None
    }
    bad = broken(found, outcomes)
    cached = sum(1 for o in outcomes.values() if o.cached)
    items = [
        Item(
            "links",
            "checked",
            "fail" if bad else "ok",
            f"{len(found)} links and images checked ({cached} from the last day), "
            f"{len(bad)} broken",
        )
    ]
    for target, outcome in bad:
        items.append(
            Item(
                "links",
                f"{target.kind} {target.url}",
                "fail",
                f"{outcome.detail} in {target.post}",
                "fix or remove the link in that post",
            )
        )
    return items, sizes


# --- the report and the gate -------------------------------------------------------------


def issue_report(
    config: Config,
    composed: ComposedEmail,
    *,
    checks: Sequence[CheckResult] | None = None,
    posts: Iterable[Post] | None = None,
    now: float | None = None,
    dns: bool = True,
    provider: bool = True,
    unsubscribe: bool = True,
    lookup: Lookup | None = None,
) -> DeliverabilityReport:
    """Every check asked for, in one report (links only when ``posts`` and ``now``)."""
    report = DeliverabilityReport(composed.issue_id, from_domain(config), config.provider.name)
    if config.provider.name in LOCAL_TRANSPORTS and (dns or provider):
        report.items.append(
            Item(
                "dns",
                "skipped",
                "info",
                f"{config.provider.name}: the messages stay on this machine, so the From "
                "domain's DNS is checked when a provider that sends is configured",
            )
        )
    else:
        if dns:
            report.items += dns_items(config, lookup)
        if provider:
            report.items += provider_items(config)
    links: list[Item] = []
    sizes = None
    if posts is not None and now is not None:
        links, sizes = link_items(config, composed.html, posts, now=now)
    report.items += presend_items(config, composed, checks, sizes)
    if unsubscribe:
        report.items.append(unsubscribe_item(config, composed))
    report.items += links
    return report


def gate(config: Config, composed: ComposedEmail, checks: Sequence[CheckResult]) -> None:
    """Before a real send: the cheap checks; a failed one raises :class:`SendRefused`."""
    blocking = [i for i in presend_items(config, composed, checks) if i.blocking]
    if blocking:
        named = "; ".join(f"{i.name}: {i.detail}" for i in blocking)
        raise SendRefused(
            f"{composed.issue_id} not sent: {len(blocking)} pre-send check"
            f"{'s' if len(blocking) != 1 else ''} failed ({named}); fix them, or send anyway "
            "with --skip-checks"
        )


class CheckedComposer(BuildComposer):
    """The real build, keeping what it built: with ``gated``, the cheap checks run on the
    issue before the send records anything (:func:`gate`); :attr:`built` is what a dry
    run reports on."""

    def __init__(self, *, gated: bool) -> None:
        super().__init__()
        self.gated = gated
        self.built: BuildResult | None = None

    def build(
        self,
        config: Config,
        *,
        now: datetime,
        week: str | None,
        since: date | None,
        until: date | None,
        write: bool,
    ) -> BuildResult:
        result = super().build(config, now=now, week=week, since=since, until=until, write=write)
        self.built = result
        if self.gated and result.selection.count:
            gate(config, result.composed, result.checks)
        return result


def gate_issue(
    config: Config, *, now: datetime, week: str | None, since: date | None, until: date | None
) -> None:
    """:func:`gate` on the issue built without writing (``send --workers``, whose
    processes build their own)."""
    CheckedComposer(gated=True).prepare(
        config, now=now, week=week, since=since, until=until, write=False
    )
