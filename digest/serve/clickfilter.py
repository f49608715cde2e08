"""Which clicks are readers': scanners and link checkers are counted apart.

Security gateways (Microsoft Safe Links, Barracuda, Proofpoint URL Defense, Mimecast,
Cisco Secure Email, Trend Micro, FortiMail, Sophos, ...) fetch every link of a message
seconds after it arrives, and link previewers fetch what is pasted into a chat. None of
them is a reader. A click is kept only when it is

- a ``GET`` (gateways often check a link with ``HEAD``; it is still answered),
- from a browser-like agent (``Mozilla/...``) that names none of :data:`SCANNER_AGENTS`,
- and not part of a burst: :data:`BURST_LINKS` or more different links of one issue from
  one client (or one reader's links) within :data:`BURST_SECONDS` of each other. A person
  opens one story, reads, comes back; a scanner fetches every link at once.

A burst can only be told once it is over, so clicks wait here for ``BURST_SECONDS`` before
they are counted, kept or filtered (the redirect itself never waits).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

# Lower-case pieces of User-Agent headers that name a link scanner, a previewer or a
# script. Gateways that send a browser's agent are caught by the burst rule instead.
SCANNER_AGENTS = (
    "barracuda",
    "proofpoint",
    "mimecast",
    "ciscosecureemail",
    "ironport",
    "tmes",
    "trendmicro",
    "fortimail",
    "fortiguard",
    "sophos",
    "msoffice",
    "safelinks",
    "microsoft office",
    "symantec",
    "bitdefender",
    "zscaler",
    "checkpoint",
    "headlesschrome",
    "phantomjs",
    "bot",
    "crawler",
    "spider",
    "preview",
    "facebookexternalhit",
    "whatsapp",
    "curl/",
    "wget/",
    "python-",
    "go-http-client",
    "java/",
    "okhttp",
    "libwww",
    "httpclient",
    "axios",
    "node-fetch",
)
BURST_LINKS = 3
BURST_SECONDS = 1.0

T = TypeVar("T")


_SCANNER = re.compile("|".join(re.escape(name) for name in SCANNER_AGENTS))


@functools.lru_cache(maxsize=1024)  # a few agents make most requests
def reader_agent(user_agent: str | None) -> bool:
    """True when the agent looks like a person's browser and names no scanner."""
    if not user_agent:
        return False
    agent = user_agent.lower()
    return agent.startswith("mozilla/") and _SCANNER.search(agent) is None


@dataclass
class _Chain(Generic[T]):
    """Clicks of one key, each within BURST_SECONDS of the one before."""

    clicks: list[tuple[float, Hashable, T]] = field(default_factory=list)

    @property
    def last(self) -> float:
        return self.clicks[-1][0]

    def burst(self) -> bool:
        """Whether some BURST_SECONDS of the chain hold BURST_LINKS different links."""
        start = 0
        for end in range(len(self.clicks)):
            while self.clicks[end][0] - self.clicks[start][0] > BURST_SECONDS:
                start += 1
            links = {link for _, link, _ in self.clicks[start : end + 1]}
            if len(links) >= BURST_LINKS:
                return True
        return False


class Bursts(Generic[T]):
    """Clicks held until their burst (if any) is over; then each is kept or filtered."""

    def __init__(self, limit: int = 100_000) -> None:
        self._chains: dict[Hashable, _Chain[T]] = {}
        self._over: list[_Chain[T]] = []  # chains a later click of their key showed over
        self._held = 0
        self.limit = limit  # held clicks past this are settled at once

    def add(self, key: Hashable, at: float, link: Hashable, click: T) -> None:
        chain = self._chains.get(key)
        if chain is not None and at - chain.last > BURST_SECONDS:
            self._over.append(chain)
            chain = None
        if chain is None:
            chain = self._chains[key] = _Chain()
        chain.clicks.append((at, link, click))
        self._held += 1

    def settle(self, now: float, *, everything: bool = False) -> Iterator[tuple[T, bool]]:
        """(click, kept) for every chain that is over (its last click BURST_SECONDS old;
        every chain with ``everything``, or when more than ``limit`` clicks are held)."""
        everything = everything or self._held > self.limit
        over = [k for k, c in self._chains.items() if everything or now - c.last > BURST_SECONDS]
        chains, self._over = [*self._over, *(self._chains.pop(key) for key in over)], []
        for chain in chains:
            self._held -= len(chain.clicks)
            kept = not chain.burst()
            for _, _, click in chain.clicks:
                yield click, kept

    def __len__(self) -> int:
        return self._held
