"""How long the send loop waits before it tries again what was refused for now.

A refusal for now (an SMTP 451, a throttle, a whole request refused with a 429 or a 503
the provider documents as not taken) puts its rows back to ``pending``; after each pass
the loop asks :meth:`RetryRounds.pause` how long to wait: the provider's ``Retry-After``
when it said one, else ``send.retry_wait`` doubling up to ``send.retry_wait_max``; and
stops the run (:class:`SendError`, exit 6, the rows pending for the next run) once
``send.max_attempts`` rounds or ``send.retry_for`` are spent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from digest.config import SendConfig
from digest.delivery.providers.base import RefusedForNow
from digest.errors import SendError


class RetryRounds:
    """How long refusals for now are retried: ``send.retry_wait`` doubling each round (at
    most ``send.retry_wait_max``), or the provider's ``Retry-After`` when it said one, for
    ``send.max_attempts`` tries and at most ``send.retry_for`` since the first."""

    def __init__(self, send: SendConfig, clock: Callable[[], datetime]) -> None:
        self.within = send.retry_for
        self.attempts = send.max_attempts
        self.first_wait = send.retry_wait.total_seconds()
        self.longest_wait = send.retry_wait_max.total_seconds()
        self.clock = clock
        self.first: datetime | None = None
        self.rounds = 0

    def reset(self) -> None:
        self.first, self.rounds = None, 0

    def pause(
        self, pending: int, why: str, retry_after: float | None = None, provider: str | None = None
    ) -> float:
        """Seconds to wait before the next try; :class:`SendError` once the bound is past
        (or the provider's ``Retry-After`` would take the wait past it): a
        :class:`RefusedForNow` of ``provider`` when whole requests were refused, as the
        transport's own error said before the loop retried them."""
        now = self.clock()
        self.first = self.first or now
        self.rounds += 1
        spent = now - self.first
        left = (self.within - spent).total_seconds()
        stay = f"{pending} message(s) stay pending: run the same command later to send them"
        if self.rounds >= self.attempts or spent >= self.within:
            raise _stop(
                f"the provider kept refusing for now ({why}) over {self.rounds} tries in "
                f"{spent.total_seconds():.0f}s; {stay}",
                provider,
            )
        if retry_after is not None:
            if retry_after > left:
                raise _stop(
                    f"the provider refused for now ({why}) and asked to wait "
                    f"{retry_after:.0f}s (Retry-After), past send.retry_for; {stay}",
                    provider,
                )
            return max(retry_after, 0.0)
        backoff = self.first_wait * 2.0 ** (self.rounds - 1)
        return max(min(backoff, self.longest_wait, left), 0.0)


def _stop(message: str, provider: str | None) -> SendError:
    return RefusedForNow(provider, message) if provider else SendError(message)
