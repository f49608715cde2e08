"""Every error digest raises on purpose, and the exit code the CLI gives it.

Library code raises a subclass of :class:`DigestError`; the CLI prints its message on one
line (no traceback) and exits with its ``exit_code``::

    DigestError                      exit 1   something went wrong; the message says what
    ├── TokenError                   exit 1   a link token is malformed, forged or expired
    │   │                                     (digest.audience.tokens)
    │   ├── ClickTokenError                   a click link's token is not one digest signed
    │   │                                     (digest.audience.clicktokens)
    │   └── OpenTokenError                    an open pixel's token is not one digest signed
    │                                         (digest.audience.opentokens)
    ├── DnsError                     exit 1   the From domain's DNS could not be asked
    │                                         (digest.delivery.dns_checks)
    ├── DkimError                    exit 1   a DKIM key cannot be made, read or used
    │                                         (digest.email.dkim)
    ├── SendRefused                  exit 1   a pre-send check failed, so nothing was sent
    │                                         (digest.delivery.deliverability)
    ├── WebhookError                 HTTP 400 a webhook request was refused (digest.serve.webhooks)
    │   ├── WebhookUnauthorized      HTTP 401 its signature or credentials do not check out
    │   └── WebhookDisabled          HTTP 404 that provider's webhook is not configured
    ├── UsageError                   exit 2   the command line names what cannot be used: a
    │                                         file or folder that is not there, a file that
    │                                         would be overwritten
    ├── WindowError                  exit 2   a --week/--since/--until that names no window
    │                                         (digest.content.select)
    ├── ConfigError                  exit 3   the config file is missing, unreadable or invalid
    ├── ContentError                 exit 4   posts, intros or templates cannot be used
    │   ├── TemplateError                     a template failed to load or render
    │   ├── OutsideFolder                     a path resolves outside its folder, or is not
    │   │                                     a file (digest.content.files)
    │   ├── SourceError                       a feed or folder of posts could not be read
    │   └── SkippedPosts                      posts could not be read and the build is
    │                                         strict (digest.email.build)
    ├── NothingToSend                exit 5   the issue is empty or has already been sent
    │   └── NoSubscribers                     nobody is subscribed yet (a scheduled run fails,
    │                                         and runs again within grace)
    ├── SendError                    exit 6   sending could not go on
    │   ├── ProviderError                     an email provider refused or failed a request
    │   │   └── RefusedForNow                 refused for now past the transport's retries:
    │   │                                     the send loop waits and tries again
    │   │                                     (digest.delivery.providers.classify)
    │   ├── LeaseLost                         another sender took over this one's rows (its
    │   │                                     lease ran out); nothing more is sent
    │   │                                     (digest.delivery.ledger_rows)
    │   └── Stopped                           a stop was asked for; stopped at a safe point
    │                                         (digest.schedule.due)
    ├── StoreError                   exit 7   the subscriber store or send ledger refused a change
    │   ├── InvalidEmail                      not a valid email address
    │   │                                     (digest.audience.subscribers)
    │   ├── StatusRefused                     a status change the transition table does not
    │   │                                     allow (digest.audience.status)
    │   ├── RhythmError                       a frequency or timezone digest does not know
    │   │                                     (digest.audience.rhythm)
    │   └── Forgotten                         the address was erased on request; only a new
    │                                         confirmed subscription brings it back
    │                                         (digest.audience.lifecycle)
    └── LockError                    exit 8   another digest process holds the lock

Errors defined beside the code that raises them are named with their module. Exit code 2
is also click's own, for a command line it cannot parse.
"""

from __future__ import annotations

from collections.abc import Sequence


class DigestError(Exception):
    """The root of every error digest raises on purpose."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(DigestError):
    """The command line names something that cannot be used: a file or folder that is not
    there, a file that would be overwritten. The same exit code as click's own usage errors."""

    exit_code = 2


class ConfigError(DigestError):
    """config.yaml cannot be used. ``problems`` holds one line per bad key."""

    exit_code = 3

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems)
        if self.problems:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(message)


class ContentError(DigestError):
    """A post, an issue intro or a template cannot be used."""

    exit_code = 4


class SourceError(ContentError):
    """A source of posts (a feed, a folder) could not be read this time.

    The loader reports it and goes on with the other sources; ``status`` is the HTTP status
    when a server answered.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class TemplateError(ContentError):
    """A template failed to load or render; ``path`` and ``line`` say where."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None) -> None:
        self.path = path
        self.line = line
        where = path or ""
        if path and line:
            where = f"{path}:{line}"
        super().__init__(f"{where}: {message}" if where else message)


class NothingToSend(DigestError):
    """The issue has no posts, or it has already been sent in full."""

    exit_code = 5


class NoSubscribers(NothingToSend):
    """Nobody is waiting for the issue: the subscriber store has no active subscriber.

    Unlike an issue that went out already, this is not done: a scheduled run records it as
    failed, so the next run within the grace period sends once subscribers are imported.
    """


class SendError(DigestError):
    """Sending cannot go on (not a single message's failure: those go to the ledger)."""

    exit_code = 6


class ProviderError(SendError):
    """An email provider refused or failed a request.

    Carries what a person needs to act on it: the provider, the HTTP status (if any), the
    provider's own message, and whether trying again later can help.
    """

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        code: str | None = None,
    ) -> None:
        self.provider = provider
        self.status = status
        self.retryable = retryable
        self.code = code
        self.provider_message = message
        status_part = f" {status}" if status is not None else ""
        super().__init__(f"{provider}{status_part}: {message}")


class StoreError(DigestError):
    """The subscriber store or the send ledger refused a change."""

    exit_code = 7


class LockError(DigestError):
    """Another digest process holds the lock this one needs."""

    exit_code = 8
