"""``/c/<token>``: a counted post link answers 302 to its post at once; the count follows.

The token (:mod:`digest.audience.clicktokens`) is checked against every link key; the post
is the one the issue's ``manifest.json`` lists at the token's place, so a click only ever
goes where the issue did (a forged or foreign token gets 400, never a redirect). Counting
never holds up the answer: each click is put in memory (:class:`ClickCounter`); the bursts
are told apart when they are over (:mod:`digest.serve.clickfilter`), and a background task
adds each process's counts to the click store every ``analytics.flush_seconds`` in one
transaction, on a thread of its own. Several serve processes on one store each add exactly
their own counts. With ``analytics.clicks: off`` links mailed earlier still redirect; nothing
is counted and no store is opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from digest.audience.clicktokens import (
    Click,
    ClickTokenError,
    read_click_token,
    read_reader_seal,
)
from digest.audience.engagement import consenting_handles
from digest.audience.subscribers import SubscriberStore
from digest.audience.tokens import verifying_secrets
from digest.config import Config
from digest.content.files import read_inside
from digest.content.memory import MANIFEST
from digest.delivery.clicks import ClickStore, Tally
from digest.email.clicklinks import counts_clicks, counts_readers, manifest_links
from digest.errors import DigestError
from digest.serve.clickfilter import Bursts, reader_agent
from digest.store.database import locate

log = logging.getLogger(__name__)

MANIFESTS_HELD = 64
TOKENS_HELD = 4096  # verified tokens: one per post link and variant of recent issues
MAX_MANIFEST = 4 * 1024 * 1024

Held = tuple[Click, str]  # the click and its UTC day


class ClickCounter:
    """Counts in memory, flushed to the click store by a background task."""

    def __init__(self, config: Config, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.target = locate(config, config.analytics.database)
        # per_subscriber: a reader's row is written only while they agree (asked at each flush)
        readers = counts_readers(config)
        self.people = locate(config, config.subscribers.database) if readers else None
        self._people: SubscriberStore | None = None
        self.every = config.analytics.flush_seconds
        self.monotonic = monotonic
        self.tally = Tally.empty()
        self.bursts: Bursts[Held] = Bursts()
        self._store: ClickStore | None = None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digest-clicks")
        self._task: asyncio.Task[None] | None = None

    def count(self, click: Click, day: str, *, head: bool, agent: str | None, client: str) -> None:
        """Take one click (no I/O, no lock: the event loop runs one handler at a time)."""
        if head or not reader_agent(agent):
            self.tally.add(click.issue_id, click.post, click.variant, day, kept=False)
            return
        who = click.handle or client
        self.bursts.add((click.issue_id, who), self.monotonic(), click.post, (click, day))

    def settle(self, *, everything: bool = False) -> None:
        for (click, day), kept in self.bursts.settle(self.monotonic(), everything=everything):
            self.tally.add(
                click.issue_id, click.post, click.variant, day, kept=kept, handle=click.handle
            )

    def _agreeing(self, tally: Tally) -> None:
        """Drop the per-reader counts of readers who do not agree (now) to be counted."""
        if not tally.readers:
            return
        agree: set[str] = set()
        if self.people is not None:
            if self._people is None:
                self._people = SubscriberStore(self.people)
            agree = consenting_handles(self._people.connection, {h for _, h in tally.readers})
        tally.readers = {key: n for key, n in tally.readers.items() if key[1] in agree}

    def _write(self, tally: Tally) -> None:
        if self._store is None:
            self._store = ClickStore(self.target)
        self._agreeing(tally)
        try:
            self._store.add(tally)
            if tally.readers and self._people is not None:
                # a reader who withdrew between the check and the write: theirs go again
                written = {handle for _, handle in tally.readers}
                agree = consenting_handles(self._people.connection, written)
                if written - agree:
                    self._store.forget(written - agree)
        except BaseException:
            self._close()  # a broken connection: the next flush opens a new one
            raise

    async def flush(self, *, everything: bool = False) -> None:
        """Add what is settled to the store; kept in memory for the next try if it fails."""
        self.settle(everything=everything)
        if not self.tally:
            return
        tally, self.tally = self.tally, Tally.empty()
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._writer, self._write, tally)
        except Exception as exc:  # the counts stay; a store that is down must not end the task
            log.warning("click counts not written yet (tried again later): %s", exc)
            tally.merge(self.tally)
            self.tally = tally

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush(everything=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._close)
        self._writer.shutdown(wait=True)

    def _close(self) -> None:
        store, self._store = self._store, None
        people, self._people = self._people, None
        if people is not None:
            with contextlib.suppress(Exception):
                people.close()
        if store is not None:
            with contextlib.suppress(Exception):  # a connection already broken
                store.close()


class ClickRoute:
    """The ``/c/{token}`` handler and what it holds: the link keys, the issues' post
    links (a few manifests, the latest used kept), the counter."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.clock = clock
        self.keys = verifying_secrets(config)
        self.out = config.path(config.out_dir)
        self.links: OrderedDict[str, list[str]] = OrderedDict()
        # Every reader of a variant follows the same token for a post (in aggregate mode),
        # so a token verified once is not verified again (a forged one never gets in here).
        self.verified: OrderedDict[str, Click] = OrderedDict()
        counting = counts_clicks(config) or config.analytics.opens  # opens: digest.serve.opens
        self.counter = ClickCounter(config, monotonic=monotonic) if counting else None

    def post_links(self, issue_id: str) -> list[str] | None:
        """The issue's post links from its manifest (None: no such issue here)."""
        found = self.links.get(issue_id)
        if found is not None:
            self.links.move_to_end(issue_id)
            return found
        try:
            raw = read_inside(self.out, self.out / issue_id / MANIFEST, max_bytes=MAX_MANIFEST)
            manifest: Any = json.loads(raw)
            found = manifest_links(manifest) if isinstance(manifest, dict) else None
        except (OSError, ValueError, DigestError):
            found = None
        if found is None or manifest.get("issue_id") != issue_id:
            return None
        self.links[issue_id] = found
        if len(self.links) > MANIFESTS_HELD:
            self.links.popitem(last=False)
        return found

    def read(self, token: str) -> Click:
        """What ``token`` names (:class:`ClickTokenError` when no link key signed it)."""
        click = self.verified.get(token)
        if click is not None:
            self.verified.move_to_end(token)
            return click
        click = self.verified[token] = read_click_token(token, self.keys)
        if len(self.verified) > TOKENS_HELD:
            self.verified.popitem(last=False)
        return click

    async def follow(self, request: Request) -> Response:
        link, sealed, seal = request.path_params["token"].partition("/")
        try:
            click = self.read(link)
            if sealed:  # a consenting reader's link: /c/<token>/<seal>
                click = replace(click, handle=read_reader_seal(seal, click.issue_id, self.keys))
        except ClickTokenError as exc:
            return PlainTextResponse(f"{exc.message}\n", status_code=400)
        links = self.post_links(click.issue_id)
        if links is None or click.post >= len(links):
            return PlainTextResponse("This issue's links are not here.\n", status_code=404)
        if self.counter is not None:
            self.counter.count(
                click,
                self.clock().date().isoformat(),
                head=request.method == "HEAD",
                agent=request.headers.get("user-agent"),
                client=request.client.host if request.client else "",
            )
        return RedirectResponse(
            links[click.post], status_code=302, headers={"Cache-Control": "no-store"}
        )

    def start(self) -> None:
        if self.counter is not None:
            self.counter.start()

    async def stop(self) -> None:
        if self.counter is not None:
            await self.counter.stop()
