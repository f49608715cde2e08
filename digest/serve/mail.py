"""The emails ``digest serve`` sends itself: the confirmation, the "already subscribed"
notice and the welcome, rendered from templates/serve/ and sent through the configured
provider (outbox by default)."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from typing import Any

from digest import i18n
from digest.audience.subscribers import Subscriber
from digest.config import Config
from digest.delivery.providers.base import Batch, Provider, Recipient, Result, idempotency_key
from digest.delivery.providers.registry import make_provider
from digest.safelog import clean, log_change
from digest.serve.pages import Pages

log = logging.getLogger(__name__)

CONFIRM_ISSUE = "confirmations"
"""The provider sees confirmation emails as this issue (outbox: out/confirmations/outbox/)."""
WELCOME_ISSUE = "welcome"
"""… and welcome emails as this one (outbox: out/welcome/outbox/)."""
SUNSET_ISSUE = "sunset"
"""… and the sunset flow's re-permission mails as this one (serve/sunset.py)."""

CONFIRM_TEMPLATE = "confirm_email"
NOTICE_TEMPLATE = "already_subscribed_email"
WELCOME_TEMPLATE = "welcome_email"
SUNSET_TEMPLATE = "sunset_email"


@dataclass(frozen=True)
class ConfirmationEmail:
    """The confirmation message; has what a provider needs from a composed email."""

    issue_id: str
    subject: str
    html: str
    text: str
    headers: dict[str, str]
    from_address: str


def render_message(
    composed: Any,
    *,
    to: str,
    values: Any = None,
    message_id: str | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) for one recipient."""
    message = EmailMessage()
    message["From"] = composed.from_address
    message["To"] = to
    message["Subject"] = composed.subject
    if date is not None:
        message["Date"] = format_datetime(date)
    message["Message-ID"] = message_id or make_msgid()
    for name, value in composed.headers.items():
        message[name] = value
    message.set_content(composed.text)
    message.add_alternative(composed.html, subtype="html")
    return message


class Mailer:
    """Sends confirmation emails through the configured provider (outbox by default)."""

    def __init__(self, config: Config, pages: Pages, provider: Provider | None = None) -> None:
        self.config = config
        self.pages = pages
        self.provider = provider or make_provider(config)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-mail")

    def compose(
        self,
        subscriber: Subscriber,
        url: str,
        template: str = CONFIRM_TEMPLATE,
        extra: dict[str, Any] | None = None,
    ) -> ConfirmationEmail:
        """``template``: confirm_email (``url`` confirms), already_subscribed_email or
        welcome_email (``url`` is the preferences page); ``extra`` adds to the context."""
        # A confirmation goes to an address nobody has confirmed yet: it holds nothing the
        # request wrote (no name), so a stranger cannot put words in mail from the site.
        name = subscriber.name if template != CONFIRM_TEMPLATE else ""
        context: dict[str, Any] = {"url": url, "email": subscriber.email, "name": name}
        context.update(extra or {})
        context["language"] = language = self.pages.language(subscriber.language)
        if language != i18n.SOURCE and context.get("next_issue_iso"):
            when = datetime.fromisoformat(str(context["next_issue_iso"]))
            zone = str(context.get("next_issue_zone") or when.tzinfo)
            context["next_issue"] = i18n.moment(when, language, zone)
        sender = self.config.sender
        headers = {"Auto-Submitted": "auto-generated"}
        if sender.reply_to:
            headers["Reply-To"] = sender.reply_to
        return ConfirmationEmail(
            issue_id={WELCOME_TEMPLATE: WELCOME_ISSUE, SUNSET_TEMPLATE: SUNSET_ISSUE}.get(
                template, CONFIRM_ISSUE
            ),
            subject=self.pages.render(f"{template}.subject.j2", **context).strip(),
            html=self.pages.render(f"{template}.html.j2", **context),
            text=self.pages.render(f"{template}.txt.j2", **context),
            headers=headers,
            from_address=formataddr((sender.from_name, sender.from_email)),
        )

    def send(
        self,
        subscriber: Subscriber,
        url: str,
        now: datetime,
        template: str = CONFIRM_TEMPLATE,
        extra: dict[str, Any] | None = None,
    ) -> Result:
        email = self.compose(subscriber, url, template, extra)
        domain = parseaddr(self.config.sender.from_email)[1].rpartition("@")[2]
        recipient = Recipient(
            subscriber_id=subscriber.id,
            email=subscriber.email,
            values={},
            message_id=make_msgid("confirm", domain=domain or None),
        )
        batch = Batch(
            issue_id=email.issue_id,
            variant="confirm",
            composed=email,
            recipients=(recipient,),
            idempotency_key=idempotency_key(
                f"{email.issue_id}-{now.isoformat()}", "confirm", [subscriber.id]
            ),
            renderer=render_message,
            date=now,
        )
        outcome: Result | None = None
        for event in self.provider.send(batch):
            if isinstance(event, Result):
                outcome = event
        if outcome is None:
            outcome = Result(subscriber.id, "failed-retryable", reason="no result from provider")
        log_change("mail", template=template, email=subscriber.email, state=outcome.state)
        if outcome.state != "sent":
            log.warning(
                "%s to %s: %s %s",
                template.replace("_", " "),
                subscriber.email,
                outcome.state,
                clean(outcome.reason or "", 300),
            )
        return outcome

    async def send_async(
        self,
        subscriber: Subscriber,
        url: str,
        now: datetime,
        template: str = CONFIRM_TEMPLATE,
        extra: dict[str, Any] | None = None,
    ) -> Result:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.send, subscriber, url, now, template, extra
        )

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.provider.close()


# --------------------------------------------------------------------------- welcome


def welcome_context(next_issue: datetime | None) -> dict[str, str]:
    """The welcome email's words for when the next issue goes out (in the schedule's zone)."""
    if next_issue is None:
        return {"next_issue": "", "next_issue_iso": "", "next_issue_zone": ""}
    zone = str(next_issue.tzinfo)
    return {
        "next_issue": f"{next_issue:%A} {next_issue.day} {next_issue:%B %Y} at "
        f"{next_issue:%H:%M} ({zone})",
        "next_issue_iso": next_issue.isoformat(),
        "next_issue_zone": zone,
    }
