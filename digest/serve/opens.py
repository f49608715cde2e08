"""``/o/<token>``: the open pixel (``analytics.opens``) answers a 1×1 GIF; the open is
counted in aggregate, beside the clicks.

The token (:mod:`digest.audience.opentokens`) names the issue, the variant and the second
the send began, never the reader; a token no link key signed gets 400. The answer never
waits: the open is added to the process's click tally (:class:`~digest.serve.clicks.ClickCounter`)
and reaches the click store with the clicks, every ``analytics.flush_seconds``.

Most fetches of a pixel are not a person opening a message: Apple Mail Privacy Protection
fetches every image of every message as it is delivered, through Apple's proxies, and
security gateways fetch what a message links to. A fetch is counted as a **machine** open
when it is a ``HEAD``, comes from an agent that is not a browser or names a scanner
(:func:`digest.serve.clickfilter.reader_agent`), is an image proxy's bare ``Mozilla/5.0``,
or comes within :data:`PREFETCH_SECONDS` of the send's start (the moment messages are
delivered, and proxies prefetch); every other fetch is **kept**, and still only may be a
reader's. With ``opens: false`` pixels mailed earlier still answer, and nothing is counted.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from digest.audience.links import OPEN_ROUTE as OPEN_ROUTE
from digest.audience.opentokens import OpenTokenError, read_open_token
from digest.config import Config
from digest.serve.clickfilter import reader_agent
from digest.serve.clicks import ClickCounter

PREFETCH_SECONDS = 60
PROXY_AGENTS = frozenset({"mozilla/5.0"})  # an image proxy's whole User-Agent
# The smallest transparent GIF: 1×1, one transparent colour.
GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00"
    b"\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
PIXEL_HEADERS = {"Cache-Control": "no-store, max-age=0", "Content-Type": "image/gif"}


def machine_open(*, head: bool, agent: str | None, since_sent: float) -> bool:
    """Whether a pixel fetch is a machine's (see the module's docstring)."""
    if head or not reader_agent(agent) or since_sent < PREFETCH_SECONDS:
        return True
    return (agent or "").strip().lower() in PROXY_AGENTS


class OpenRoute:
    """The ``/o/{token}`` handler: the link keys, the clock and the click counter (None:
    neither clicks nor opens are counted)."""

    def __init__(
        self,
        config: Config,
        keys: tuple[bytes, ...],
        counter: ClickCounter | None,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        self.keys = keys
        self.clock = clock
        self.counter = counter if config.analytics.opens else None

    async def pixel(self, request: Request) -> Response:
        try:
            opened = read_open_token(request.path_params["token"], self.keys)
        except OpenTokenError as exc:
            return PlainTextResponse(f"{exc.message}\n", status_code=400)
        if self.counter is not None:
            machine = machine_open(
                head=request.method == "HEAD",
                agent=request.headers.get("user-agent"),
                since_sent=self.clock().timestamp() - opened.sent,
            )
            self.counter.tally.add_open(opened.issue_id, opened.variant, machine=machine)
        return Response(GIF, headers=PIXEL_HEADERS)
